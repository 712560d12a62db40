// A real Express app for authsidecar's end-to-end tests: the kind of app
// that sits behind the sidecar, routing the way Express does by default
// (case-insensitive, params decoded, method-override honoured). Each route
// handler records that it ran, so a test can tell whether a request the
// sidecar should have refused reached the app's own code.
//
// Environment:
//   APP_PORT         TCP port on 127.0.0.1 for the app; 0 (default) picks one.
//   APP_WATCH_STDIN  "1": exit when stdin reaches EOF (the test harness
//                    sets it, so the app dies with the test process).
//
// Once listening it prints exactly one line to stdout:
//   {"port":PORT,"control":CONTROL_PORT}
// The control port (never behind the sidecar) serves GET /ran, the list of
// handlers that ran, and POST /reset.
import express from "express";
import methodOverride from "method-override";

const ran = [];
const record = (name) => (req, res) => {
  ran.push({ handler: name, method: req.method, url: req.originalUrl, params: req.params });
  res.json({ handler: name, params: req.params });
};

const app = express();
// Apps commonly accept the method from any of these; the sidecar must
// judge the request by the method the handler will see.
app.use(methodOverride("X-HTTP-Method-Override"));
app.use(methodOverride("X-HTTP-Method"));
app.use(methodOverride("X-Method-Override"));
app.use(methodOverride("_method"));
// And from an HTML form's hidden field, as method-override's README shows,
// or a JSON body's member.
app.use(express.urlencoded({ extended: false }));
app.use(express.json());
app.use(
  methodOverride((req) => {
    if (req.body && typeof req.body === "object" && "_method" in req.body) {
      const method = req.body._method;
      delete req.body._method;
      return method;
    }
  }),
);

app.get("/", record("root"));
app.get("/public/info", record("public"));
app.all("/admin/{*rest}", record("admin"));
app.delete("/orders/:id", (req, res) => {
  // What a real handler does with the id: parseInt("1/x") is 1.
  const id = parseInt(req.params.id, 10);
  ran.push({ handler: "delete-order", method: req.method, url: req.originalUrl, params: { id: String(id) } });
  res.json({ deleted: id });
});
app.get("/tenants/:tenant/orders", record("tenant-orders"));
app.use((req, res) => res.status(404).json({ error: "no route", url: req.originalUrl }));

const control = express();
control.get("/ran", (req, res) => res.json(ran));
control.post("/reset", (req, res) => {
  ran.length = 0;
  res.status(204).end();
});

const port = Number(process.env.APP_PORT || 0);
const server = app.listen(port, "127.0.0.1", () => {
  const controlServer = control.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ port: server.address().port, control: controlServer.address().port }) + "\n");
  });
});

if (process.env.APP_WATCH_STDIN === "1") {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
process.on("SIGTERM", () => process.exit(0));
