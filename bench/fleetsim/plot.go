package fleetsim

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var kindColors = [numKinds]color.Color{
	KindToken:     color.RGBA{R: 31, G: 119, B: 180, A: 255},
	KindJWKS:      color.RGBA{R: 255, G: 127, B: 14, A: 255},
	KindDiscovery: color.RGBA{R: 44, G: 160, B: 44, A: 255},
}

// zoom is the part of a run the lower panel shows, in seconds.
func zoom(r *Result) (from, to int) {
	n := len(r.Sent[0])
	o := r.Options
	switch r.Scenario {
	case "steady":
		return 0, min(n, int((o.Rollout+2*o.TokenLifetime)/time.Second))
	case "outage":
		return max(0, r.EventAt-300), min(n, r.EventEnd+900)
	default:
		return max(0, r.EventAt-300), min(n, r.EventAt+int(o.TokenLifetime/time.Second))
	}
}

// WritePlot draws r's identity-provider requests per simulated second to
// a PNG at path: the whole run above (log scale), the part around the
// event below.
func WritePlot(path string, r *Result, s *Summary) error {
	from, to := zoom(r)
	top, err := panel(r, s, 0, len(r.Sent[0]), true)
	if err != nil {
		return err
	}
	top.Title.Text = fmt.Sprintf("%s: %s", r.Scenario, Describe(r.Scenario, r.Options))
	bottom, err := panel(r, s, from, to, false)
	if err != nil {
		return err
	}
	bottom.Title.Text = fmt.Sprintf("%s to %s, linear", clockAt(from), clockAt(to))
	const w, h = 30 * vg.Centimeter, 20 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2, PadY: vg.Millimeter * 6}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func panel(r *Result, s *Summary, from, to int, logY bool) (*plot.Plot, error) {
	p := plot.New()
	hours := to-from > 3*3600
	p.X.Label.Text = "simulated time (minutes)"
	unit := 60.0
	if hours {
		p.X.Label.Text, unit = "simulated time (hours)", 3600
	}
	p.Y.Label.Text = "identity-provider requests / s"
	floor := 0.0
	if logY {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		floor = 0.8 // log scale: empty seconds are drawn just under 1
	}
	points := func(v func(sec int) float64) plotter.XYs {
		xy := make(plotter.XYs, 0, to-from)
		for sec := from; sec < to; sec++ {
			xy = append(xy, plotter.XY{X: float64(sec) / unit, Y: math.Max(v(sec), floor)})
		}
		return xy
	}
	total, err := plotter.NewLine(points(func(sec int) float64 {
		sum := 0.0
		for k := range numKinds {
			sum += float64(r.Sent[k][sec])
		}
		return sum
	}))
	if err != nil {
		return nil, err
	}
	total.Color, total.Width = color.Black, vg.Points(0.8)
	p.Add(total)
	p.Legend.Add("all", total)
	for k := range numKinds {
		l, err := plotter.NewLine(points(func(sec int) float64 { return float64(r.Sent[k][sec]) }))
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = kindColors[k], vg.Points(0.6)
		p.Add(l)
		p.Legend.Add(KindNames[k], l)
	}
	steady, err := plotter.NewLine(plotter.XYs{{X: float64(from) / unit, Y: 3 * s.Steady}, {X: float64(to) / unit, Y: 3 * s.Steady}})
	if err != nil {
		return nil, err
	}
	steady.Color, steady.Dashes = color.Gray{Y: 120}, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(steady)
	p.Legend.Add(fmt.Sprintf("3 × steady (%.0f/s)", 3*s.Steady), steady)
	p.Legend.Top, p.Legend.Left = true, false
	p.X.Min, p.X.Max = float64(from)/unit, float64(to)/unit
	if logY {
		p.Y.Min = floor
	} else {
		p.Y.Min = 0
	}
	p.Add(plotter.NewGrid())
	return p, nil
}
