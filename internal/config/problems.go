package config

import (
	"slices"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// Path is the field, such as "connections[0].client_secret_file"; ""
	// for the file as a whole (such as a YAML syntax error).
	Path    string
	Message string
}

// String is "path: message", or the message alone for the whole file.
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is every problem of a config file. As an error, it is one line per
// problem.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Paths returns the path of each problem, in order.
func (ps Problems) Paths() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Path
	}
	return out
}

// sort orders problems by path, numbers in paths by value
// (connections[2] before connections[10]), and drops duplicates.
func (ps *Problems) sort() {
	slices.SortStableFunc(*ps, func(a, b Problem) int { return naturalCompare(a.Path, b.Path) })
	*ps = slices.Compact(*ps)
}

// naturalCompare compares strings with runs of digits compared as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
