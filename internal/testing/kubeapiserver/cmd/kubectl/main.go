// Command kubectl is the upstream kubectl at the same version as the kube-apiserver built beside it;
// Debian's packaged kubectl is far too old for the server.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	// RunNoErrOutput leaves printing the error and choosing the exit code to kubectl's own
	// CheckErr, as upstream's main does.
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
