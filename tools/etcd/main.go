// Command etcd is the etcd server, built from the Go module proxy at the version
// that k8s.io/kubernetes pins for its etcd client (see go.mod).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
