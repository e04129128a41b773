// Command packedfiles reads the files `vmm build --files testdata/packedroot`
// packed into its image, and writes to one of them.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	b, err := os.ReadFile("/etc/greeting.txt")
	fmt.Printf("greeting=%q err=%v\n", b, err)
	filepath.Walk("/data", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			fmt.Println("walk error:", err)
			return err
		}
		fmt.Printf("%s %v %d\n", p, fi.Mode(), fi.Size())
		return nil
	})
	t, err := os.Readlink("/data/link")
	fmt.Printf("link=%s err=%v\n", t, err)
	b, err = os.ReadFile("/data/link")
	fmt.Printf("via link=%q err=%v\n", b, err)
	f, err := os.OpenFile("/etc/greeting.txt", os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		f.WriteString("and from the guest\n")
		f.Close()
	}
	b, err = os.ReadFile("/etc/greeting.txt")
	fmt.Printf("after write=%q err=%v\n", b, err)
	st, _ := os.Stat("/etc/greeting.txt")
	fmt.Println("mtime year:", st.ModTime().Year() > 2000)
}
