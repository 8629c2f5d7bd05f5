// Command coredns is the dev cluster's DNS server: CoreDNS, built from the Go module proxy
// as a library (coremain), with only the plugins the real node's Corefile uses. A full
// CoreDNS build compiles the clients of every cloud DNS service; this one compiles the
// Kubernetes client and little else. go.mod pins k8s.io/{api,apimachinery,client-go} to the
// versions tools/k8s builds with, so Go's build cache already holds most of it.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins, registered by their init functions.
	_ "github.com/coredns/coredns/plugin/acl"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives lists the compiled-in plugins in CoreDNS's execution order (its plugin.cfg):
// a query passes through them top to bottom, whatever order the Corefile names them in.
var directives = []string{
	"bind",
	"ready",
	"errors",
	"log",
	"acl",
	"cache",
	"kubernetes",
	"loop",
	"forward",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintln(os.Stderr, "coredns:", err)
		os.Exit(1)
	}
	coremain.Run()
}
