package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Path is the dotted path of the bad field, e.g. "database.read_url";
	// empty when the problem is with the file as a whole.
	Path string `json:"path"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// String formats the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error carries every problem found while loading or validating.
type Error struct {
	Problems []Problem
}

// Error lists the problems, e.g. "config: server.adr: unknown key".
func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "config: " + e.Problems[0].String()
	}
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("config: %d problems: %s", len(e.Problems), strings.Join(parts, "; "))
}

// asError returns nil for no problems, else an *Error with the problems
// sorted by path and de-duplicated.
func asError(ps []Problem) error {
	ps = tidy(ps)
	if len(ps) == 0 {
		return nil
	}
	return &Error{Problems: ps}
}

// tidy sorts problems by path, keeping the order of discovery within a
// path, and drops exact duplicates.
func tidy(ps []Problem) []Problem {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Problem) int { return cmp.Compare(a.Path, b.Path) })
	return slices.Compact(out)
}

// under prefixes the paths of a section's problems with the section's key.
func under(section string, ps []Problem) []Problem {
	for i := range ps {
		ps[i].Path = join(section, ps[i].Path)
	}
	return ps
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	if key == "" {
		return parent
	}
	return parent + "." + key
}
