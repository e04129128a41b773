// Command sql runs SQL statements with modernc.org/sqlite (SQLite in pure
// Go) on a database file in WAL mode and prints every row of each query.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"strings"

	_ "modernc.org/sqlite"
)

func main() {
	db, err := sql.Open("sqlite", os.Args[1])
	if err != nil {
		fail(err)
	}
	script, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	for _, stmt := range strings.Split(string(script), ";\n") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		rows, err := db.Query(stmt)
		if err != nil {
			fail(fmt.Errorf("%s: %w", stmt, err))
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				fail(err)
			}
			for i, v := range vals {
				if i > 0 {
					fmt.Print("|")
				}
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Print(v)
			}
			fmt.Println()
		}
		if err := rows.Err(); err != nil {
			fail(err)
		}
		rows.Close()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sql:", err)
	os.Exit(1)
}
