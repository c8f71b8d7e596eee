package config

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse checks that Parse never panics, that its errors are Problems,
// and that a file it accepts validates clean, survives a round trip through
// its marshalled form and, when it names no secret file or variable (Broker
// would read them), converts to a broker.Config that the broker accepts.
func FuzzParse(f *testing.F) {
	for _, name := range []string{exampleFile, brokenFile} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(minimal))
	f.Add([]byte(""))
	f.Add([]byte("listen: [\n"))
	f.Add([]byte("timing: {refresh_at: 1e400, wait: 99999999999999999999999}\n" + minimal))
	f.Add([]byte("connections: [{name: \"\u202eadobe\", client_id: \"\u200b\", headers: {\"\U0001F511\": \"\x00\"}}]\n"))
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"))
	f.Add([]byte("connections:\n  - name: a\n    client_secret: s\netcd: {password: p}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<10 {
			// Mutants of the large example file starve the coverage-guided
			// workers (go.yaml.in/yaml/v2's reader spends seconds on some):
			// fuzz the structure with smaller files.
			return
		}
		file, err := Parse(data)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v (%T) is not Problems", err, err)
			}
			for _, p := range ps {
				if p.Message == "" {
					t.Fatalf("problem without a message at %q", p.Path)
				}
			}
			return
		}
		if ps := file.Validate(); len(ps) > 0 {
			t.Fatalf("Parse accepted a file that does not validate:\n%v", ps)
		}
		if !hasSecretSource(file) { // else Broker would read files the input names
			if _, err := file.Broker(); err != nil {
				t.Fatalf("Broker of a valid file without secrets: %v", err)
			}
		}
		out, err := yaml.Marshal(file)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("the marshalled file does not parse: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the file (%v):\n%s\n---\n%s", err, out, out2)
		}
	})
}

func hasSecretSource(f *File) bool {
	for _, c := range f.Connections {
		if c.ClientSecretFile != "" || c.ClientSecretEnv != "" {
			return true
		}
	}
	return false
}
