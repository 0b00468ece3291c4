package config

import "slices"

// Check reports every problem with the configuration that Load would build
// from the file at path and the environment: YAML syntax, unknown keys,
// values of the wrong type, schema violations, environment variable
// problems and semantic problems, each with the dotted path of the bad
// field, sorted by path and de-duplicated. It backs `perk config check`.
//
// A schema violation is left out when its path already has a problem found
// by the decoder or by Validate, whose messages are more specific.
func Check(path string, lookupEnv func(string) (string, bool)) []Problem {
	l, err := load(path, lookupEnv)
	if err != nil {
		return []Problem{{Message: err.Error()}}
	}
	problems := append(l.problems, l.cfg.problems()...)
	if l.root != nil {
		found := slices.Clone(problems)
		for _, p := range schemaProblems(l.root) {
			covered := slices.ContainsFunc(found, func(h Problem) bool { return h.Path == p.Path })
			if !covered || p.Message == "unknown key" {
				problems = append(problems, p)
			}
		}
	}
	return tidy(problems)
}
