package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartData is scenario 1's result per variant and concurrency.
type chartData struct {
	concs    []int
	variants []string
	rate     [][]float64 // [variant][conc] operations per second
	p99      [][]float64 // [variant][conc] milliseconds
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// writeChart draws throughput and p99 latency as grouped bars, one group per
// concurrency, one bar per variant, side by side in one PNG.
func writeChart(path string, d *chartData, title string) error {
	names := make([]string, len(d.concs))
	for i, c := range d.concs {
		names[i] = fmt.Sprintf("c=%d", c)
	}
	mk := func(vals [][]float64, ytitle, ptitle string) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = ptitle
		p.Y.Label.Text = ytitle
		p.X.Label.Text = "concurrent callers"
		p.Y.Min = 0
		w := vg.Points(11)
		for v, row := range vals {
			bars, err := plotter.NewBarChart(plotter.Values(row), w)
			if err != nil {
				return nil, err
			}
			bars.LineStyle.Width = 0
			bars.Color = palette[v%len(palette)]
			bars.Offset = w * vg.Length(2*v-len(vals)+1) / 2
			p.Add(bars)
			p.Legend.Add(d.variants[v], bars)
		}
		top := 0.0
		for _, row := range vals {
			for _, v := range row {
				top = max(top, v)
			}
		}
		p.Y.Max = top * 1.3 // room for the legend
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		p.Add(plotter.NewGrid())
		p.NominalX(names...)
		return p, nil
	}
	tp, err := mk(d.rate, "calls per second", "Throughput")
	if err != nil {
		return err
	}
	lp, err := mk(d.p99, "milliseconds", "p99 latency")
	if err != nil {
		return err
	}
	img := vgimg.New(vg.Points(900), vg.Points(380))
	dc := draw.New(img)
	head := dc
	head.Min.Y = dc.Max.Y - vg.Points(22)
	ts := draw.TextStyle{Color: color.Black, Font: plot.DefaultFont, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter}
	ts.Font.Size = vg.Points(11)
	head.FillText(ts, vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - vg.Points(16)}, title)
	body := dc
	body.Max.Y -= vg.Points(22)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(18), PadTop: vg.Points(4), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10)}
	cs := plot.Align([][]*plot.Plot{{tp, lp}}, tiles, body)
	tp.Draw(cs[0][0])
	lp.Draw(cs[0][1])
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
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
