// Package watch keeps the store in step with config sources. Folder
// watches directories of YAML/JSON files: each file is one store source,
// named by its path; new, edited and removed files are re-read and applied;
// invalid edits are logged with their path-rooted errors while the last
// good version of each object stays in force.
package watch
