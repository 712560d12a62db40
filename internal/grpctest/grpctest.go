// Package grpctest is a small gRPC service for tests, examples and
// benchmarks, defined without generated code: an echo service whose
// answers say what metadata the server saw, so that a test can check the
// identity the sidecar passed on. Its messages are the well-known
// google.protobuf.StringValue.
package grpctest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the service's full name.
const ServiceName = "authsidecar.test.Echo"

// Server is the service: Unary echoes, ServerStream sends as many answers
// as its request asks, Bidi echoes each message. Every answer is the JSON
// of a Seen.
type Server struct {
	// Calls counts the calls that reached the server.
	Calls atomic.Int64
	// Refuse, while above zero, makes that many calls fail with
	// UNAUTHENTICATED before running, as a server that refused the token.
	Refuse atomic.Int64
	// Cancelled counts the calls whose context ended while they slept.
	Cancelled atomic.Int64
}

// Seen is what the server saw of a call.
type Seen struct {
	Message  string `json:"message"`
	Subject  string `json:"subject,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Scopes   string `json:"scopes,omitempty"`
	// Authorization is the authorization metadata, which the inbound
	// sidecar removes: a test asserts it is empty.
	Authorization string `json:"authorization,omitempty"`
	Index         int    `json:"index,omitempty"`
}

// Register adds the service to s.
func Register(s *grpc.Server, srv *Server) { s.RegisterService(&serviceDesc, srv) }

func (s *Server) seen(ctx context.Context, msg string, i int) (*wrapperspb.StringValue, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string { return strings.Join(md.Get(k), ",") }
	b, err := json.Marshal(Seen{Message: msg, Subject: get("x-auth-subject"), ClientID: get("x-auth-client-id"),
		Scopes: get("x-auth-scopes"), Authorization: get("authorization"), Index: i})
	if err != nil {
		return nil, err
	}
	return wrapperspb.String(string(b)), nil
}

func (s *Server) admit() error {
	s.Calls.Add(1)
	for {
		n := s.Refuse.Load()
		if n <= 0 {
			return nil
		}
		if s.Refuse.CompareAndSwap(n, n-1) {
			return status.Error(codes.Unauthenticated, "token refused")
		}
	}
}

func (s *Server) unary(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if err := s.admit(); err != nil {
		return nil, err
	}
	// "sleep:DURATION" answers late, or not at all if the call's deadline
	// comes first.
	if d, err := time.ParseDuration(strings.TrimPrefix(in.GetValue(), "sleep:")); err == nil && strings.HasPrefix(in.GetValue(), "sleep:") {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			s.Cancelled.Add(1)
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return s.seen(ctx, in.GetValue(), 0)
}

func (s *Server) serverStream(in *wrapperspb.StringValue, stream grpc.ServerStream) error {
	if err := s.admit(); err != nil {
		return err
	}
	n, err := strconv.Atoi(in.GetValue())
	if err != nil {
		return status.Error(codes.InvalidArgument, "want a count")
	}
	for i := range n {
		out, err := s.seen(stream.Context(), "part", i)
		if err != nil {
			return err
		}
		if err := stream.SendMsg(out); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) bidi(stream grpc.ServerStream) error {
	if err := s.admit(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		out, err := s.seen(stream.Context(), in.GetValue(), i)
		if err != nil {
			return err
		}
		if err := stream.SendMsg(out); err != nil {
			return err
		}
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(*Server).unary(ctx, in)
		},
	}},
	Streams: []grpc.StreamDesc{
		{StreamName: "ServerStream", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return srv.(*Server).serverStream(in, stream)
		}},
		{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(*Server).bidi(stream)
		}},
	},
}

// Client calls the service on a connection.
type Client struct{ cc grpc.ClientConnInterface }

// NewClient returns a client of the service on cc.
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc: cc} }

// Unary calls Unary with msg and returns what the server saw.
func (c *Client) Unary(ctx context.Context, msg string, opts ...grpc.CallOption) (Seen, error) {
	out := new(wrapperspb.StringValue)
	if err := c.cc.Invoke(ctx, "/"+ServiceName+"/Unary", wrapperspb.String(msg), out, opts...); err != nil {
		return Seen{}, err
	}
	return decode(out)
}

// ServerStream asks for n answers and returns them.
func (c *Client) ServerStream(ctx context.Context, n int, opts ...grpc.CallOption) ([]Seen, error) {
	stream, err := c.cc.NewStream(ctx, &serviceDesc.Streams[0], "/"+ServiceName+"/ServerStream", opts...)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(wrapperspb.String(strconv.Itoa(n))); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var all []Seen
	for {
		out := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(out); errors.Is(err, io.EOF) {
			return all, nil
		} else if err != nil {
			return all, err
		}
		s, err := decode(out)
		if err != nil {
			return all, err
		}
		all = append(all, s)
	}
}

// Bidi sends each message and waits for its echo before the next, so the
// call is truly full duplex, and returns the echoes.
func (c *Client) Bidi(ctx context.Context, msgs []string, opts ...grpc.CallOption) ([]Seen, error) {
	stream, err := c.cc.NewStream(ctx, &serviceDesc.Streams[1], "/"+ServiceName+"/Bidi", opts...)
	if err != nil {
		return nil, err
	}
	var all []Seen
	for _, m := range msgs {
		if err := stream.SendMsg(wrapperspb.String(m)); err != nil {
			return all, err
		}
		out := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(out); err != nil {
			return all, err
		}
		s, err := decode(out)
		if err != nil {
			return all, err
		}
		all = append(all, s)
	}
	if err := stream.CloseSend(); err != nil {
		return all, err
	}
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); !errors.Is(err, io.EOF) {
		return all, err
	}
	return all, nil
}

func decode(v *wrapperspb.StringValue) (Seen, error) {
	var s Seen
	err := json.Unmarshal([]byte(v.GetValue()), &s)
	return s, err
}
