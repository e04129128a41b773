// Command timezones loads a time zone by name and prints an instant in it
// and in the local time zone (TZ, else UTC).
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	t := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		fmt.Println("LoadLocation:", err)
		os.Exit(1)
	}
	fmt.Println("new york:", t.In(ny).Format("2006-01-02 15:04 MST -0700"))
	fmt.Println("local:", t.In(time.Local).Format("2006-01-02 15:04 MST -0700"))
}
