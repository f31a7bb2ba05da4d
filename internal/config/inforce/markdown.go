package inforce

import (
	"fmt"
	"strings"
)

// Markdown renders the table as docs/config.md's support matrix: one
// section per kind, one row per field path.
func Markdown() string {
	var b strings.Builder
	b.WriteString("Generated from the in-force table (`internal/config/inforce/table.go`); `go test ./internal/config/inforce -update` rewrites it.\n")
	b.WriteString("A path ending in `.*` covers every field below it that has no row of its own; `[]` is any list item, `{}` any map key.\n")
	b.WriteString("Fields marked *not in force* or *partly* are reported by `trellis validate`, `trellis up` and the control plane as TRL0007 warnings when used.\n")
	for _, k := range Kinds() {
		title := k.Kind
		switch {
		case k == MeshConfig:
			title = "MeshConfig (ConfigMap `istio` in the root namespace, key `mesh`)"
		case k.Group != "":
			title = k.Kind + " (" + k.Group + ")"
		}
		fmt.Fprintf(&b, "\n### %s\n\n| field | status | note |\n|---|---|---|\n", title)
		for _, e := range Entries(k) {
			path := e.Path
			switch {
			case path == "" && e.Whole:
				path = "(the whole object)"
			case path == "":
				path = "(the object)"
			case e.Whole:
				path += ".*"
			}
			path = "`" + path + "`"
			if e.Value != "" {
				path += " = `" + e.Value + "`"
			}
			status := e.Status.String()
			if e.Security {
				status = "**NOT ENFORCED**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", path, status, strings.ReplaceAll(e.Note, "|", "\\|"))
		}
	}
	return b.String()
}
