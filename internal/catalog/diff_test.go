package catalog

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDiffSpecs(t *testing.T) {
	t.Parallel()
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name     string
		old, new string
		want     []DiffEntry
	}{
		{name: "Equal", old: `{"a": [1, {"b": null}]}`, new: `{"a":[1,{"b":null}]}`, want: []DiffEntry{}},
		{name: "FromNothing", old: ``, new: `{"b": 2, "a": "<x>"}`, want: []DiffEntry{
			{Op: DiffAdd, Path: "/a", New: raw(`"<x>"`)},
			{Op: DiffAdd, Path: "/b", New: raw(`2`)},
		}},
		{name: "TypeChange", old: `{"a": 1, "b": {"c": 1}}`, new: `{"a": [1], "b": "c"}`, want: []DiffEntry{
			{Op: DiffChange, Path: "/a", Old: raw(`1`), New: raw(`[1]`)},
			{Op: DiffChange, Path: "/b", Old: raw(`{"c":1}`), New: raw(`"c"`)},
		}},
		{name: "NullIsAValue", old: `{"a": null}`, new: `{"a": 0}`, want: []DiffEntry{
			{Op: DiffChange, Path: "/a", Old: raw(`null`), New: raw(`0`)},
		}},
		{name: "ArrayShrinks", old: `{"l": [1, 2, 3]}`, new: `{"l": [1]}`, want: []DiffEntry{
			{Op: DiffRemove, Path: "/l/1", Old: raw(`2`)},
			{Op: DiffRemove, Path: "/l/2", Old: raw(`3`)},
		}},
		{name: "PointerEscapes", old: `{"a/b~c": {"": 1}}`, new: `{"a/b~c": {"": 2}}`, want: []DiffEntry{
			{Op: DiffChange, Path: "/a~1b~0c/", Old: raw(`1`), New: raw(`2`)},
		}},
		{name: "BigNumbersKeepTheirText", old: `{"n": 12345678901234567890}`, new: `{"n": 12345678901234567891}`,
			want: []DiffEntry{{Op: DiffChange, Path: "/n", Old: raw(`12345678901234567890`), New: raw(`12345678901234567891`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := diffSpecs(raw(tt.old), raw(tt.new))
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_, err := diffSpecs(raw(`{`), raw(`{}`))
	require.Error(t, err)
}
