// Command httpd is a small net/http server: it answers / with a greeting,
// /echo with the request's body, /sink with the number of bytes of the
// request's body (which it discards), /bytes?n=N with N bytes, /get?url=U by
// fetching U itself (the guest as a client), /lookup?host=H with H's
// addresses (the resolver: /etc/hosts, DNS) and /ifaces with the
// interfaces' names and MAC addresses (net.Interfaces: netlink). Amber's network tests and
// benchmarks boot it.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
)

func main() {
	addr := flag.String("addr", ":80", "address to listen on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from amber httpd: %s %s\n", r.Method, r.URL.Path)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Without full duplex, net/http ends the request body once the
		// response has begun: a body beyond a buffer would come back cut.
		http.NewResponseController(w).EnableFullDuplex()
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, n)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 1<<30 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		b := []byte(strings.Repeat("0123456789abcdef", 1024))
		for n > 0 {
			m := min(n, len(b))
			w.Write(b[:m])
			n -= m
		}
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("/lookup", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.LookupHost(r.URL.Query().Get("host"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, strings.Join(addrs, " "))
	})
	mux.HandleFunc("/ifaces", func(w http.ResponseWriter, r *http.Request) {
		ifs, err := net.Interfaces()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, i := range ifs {
			fmt.Fprintf(w, "%s %v\n", i.Name, i.HardwareAddr)
		}
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("httpd: listening on %s", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
