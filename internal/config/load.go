package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// IsConfigFile reports whether a file found in a folder is read: .yaml,
// .yml and .json, as kubectl apply does.
func IsConfigFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// FindFiles expands paths into the files to read, sorted. A folder gives its
// config files; its subfolders only when recursive (kubectl's -R). A file
// named explicitly is read whatever its extension.
func FindFiles(paths []string, recursive bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, root := range paths {
		st, err := os.Stat(root)
		if err != nil {
			// The *PathError would repeat the path: "cannot read x: stat x: ...".
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("cannot read %s: %w", root, err)
		}
		if !st.IsDir() {
			add(root)
			continue
		}
		var found []string
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != root && (!recursive || strings.HasPrefix(d.Name(), ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if IsConfigFile(d.Name()) {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("cannot read folder %s: %w", root, err)
		}
		sort.Strings(found)
		for _, p := range found {
			add(p)
		}
	}
	return out, nil
}

// Load reads and parses every file under paths. The error is only for
// paths that cannot be read at all; problems inside files are in each
// File's Errors.
func Load(paths []string, recursive bool) ([]*File, error) {
	names, err := FindFiles(paths, recursive)
	if err != nil {
		return nil, err
	}
	files := make([]*File, 0, len(names))
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", n, err)
		}
		files = append(files, ParseFile(n, data))
	}
	return files, nil
}

// Objects gathers the valid objects of files in order.
func Objects(files []*File) []*Object {
	var out []*Object
	for _, f := range files {
		out = append(out, f.Objects...)
	}
	return out
}
