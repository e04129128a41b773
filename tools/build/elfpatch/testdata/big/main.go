// Command big links the packages whose assembly uses AVX/AVX2/AVX-512
// (VEX/EVEX) and AES-NI encodings, to exercise the instruction decoder.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
)

func main() {
	sum := sha256.Sum256([]byte("amber"))
	block, err := aes.NewCipher(sum[:16])
	if err != nil {
		panic(err)
	}
	var enc [16]byte
	block.Encrypt(enc[:], sum[16:])
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(enc[:])
	zw.Close()
	js, _ := json.Marshal(map[string]int{"gz": buf.Len()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(js)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Printf("%x %s %s\n", sum[:4], js, resp.Status)
}
