package objstore

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/amberos/amber/objstore/filedev"
)

// Benchmarks come in pairs, ours and a baseline measured in the same run
// on the same file system: BenchmarkX/objstore against BenchmarkX/rawfile
// or BenchmarkX/bbolt.

func benchData(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func newFileStore(b *testing.B, path string) (*Store, *filedev.File) {
	dev, err := filedev.Open(path, filedev.Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	s, err := Create(dev)
	if err != nil {
		b.Fatal(err)
	}
	return s, dev
}

func BenchmarkWrite256MiB(b *testing.B) {
	const size, chunk = 256 << 20, 1 << 20
	data := benchData(chunk)
	b.Run("objstore", func(b *testing.B) {
		b.SetBytes(size)
		dir := b.TempDir()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			path := filepath.Join(dir, "s")
			os.Remove(path)
			s, dev := newFileStore(b, path)
			b.StartTimer()
			err := s.Update(func(tx *Tx) error {
				o, err := tx.Create("mem")
				if err != nil {
					return err
				}
				for off := 0; off < size; off += chunk {
					if _, err := o.WriteAt(data, int64(off)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			dev.Close()
			b.StartTimer()
		}
	})
	b.Run("rawfile", func(b *testing.B) {
		b.SetBytes(size)
		dir := b.TempDir()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			path := filepath.Join(dir, "f")
			os.Remove(path)
			b.StartTimer()
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < size; off += chunk {
				if _, err := f.WriteAt(data, int64(off)); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

func BenchmarkPut10k4KiB(b *testing.B) {
	const n = 10000
	val := benchData(4096)
	b.Run("objstore", func(b *testing.B) {
		dir := b.TempDir()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			path := filepath.Join(dir, "s")
			os.Remove(path)
			s, dev := newFileStore(b, path)
			b.StartTimer()
			err := s.Update(func(tx *Tx) error {
				for j := 0; j < n; j++ {
					o, err := tx.Create(fmt.Sprintf("obj/%05d", j))
					if err != nil {
						return err
					}
					if _, err := o.WriteAt(val, 0); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			dev.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "objects/s")
	})
	b.Run("bbolt", func(b *testing.B) {
		dir := b.TempDir()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			path := filepath.Join(dir, "b")
			os.Remove(path)
			db, err := bolt.Open(path, 0o644, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			err = db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("objects"))
				if err != nil {
					return err
				}
				for j := 0; j < n; j++ {
					if err := bk.Put([]byte(fmt.Sprintf("obj/%05d", j)), val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			db.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "objects/s")
	})
}

func BenchmarkSmallCommit(b *testing.B) {
	const blocks = 1024
	val := benchData(4096)
	b.Run("objstore", func(b *testing.B) {
		s, dev := newFileStore(b, filepath.Join(b.TempDir(), "s"))
		defer dev.Close()
		err := s.Update(func(tx *Tx) error {
			o, err := tx.Create("disk")
			if err != nil {
				return err
			}
			_, err = o.WriteAt(benchData(blocks*4096), 0)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		flushes := dev.Flushes.Load()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			err := s.Update(func(tx *Tx) error {
				o, err := tx.Open("disk")
				if err != nil {
					return err
				}
				_, err = o.WriteAt(val, int64(rng.IntN(blocks))*4096)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		b.ReportMetric(float64(dev.Flushes.Load()-flushes)/float64(b.N), "flushes/commit")
	})
	b.Run("bbolt", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "b"), 0o644, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		key := func(i int) []byte { return []byte(fmt.Sprintf("blk%05d", i)) }
		err = db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucket([]byte("disk"))
			if err != nil {
				return err
			}
			for i := 0; i < blocks; i++ {
				if err := bk.Put(key(i), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("disk")).Put(key(rng.IntN(blocks)), val)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
}

// Fixtures shared by the benchmarks of one run (building a 1 GiB object
// or 100,000 objects for each b.N would dominate the run).
var (
	fixtureMu   sync.Mutex
	fixtureDir  string
	fixtureDone = map[string]string{}
)

func fixture(b *testing.B, name string, build func(path string)) string {
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if p, ok := fixtureDone[name]; ok {
		return p
	}
	if fixtureDir == "" {
		d, err := os.MkdirTemp("", "objstore-bench-")
		if err != nil {
			b.Fatal(err)
		}
		fixtureDir = d
	}
	p := filepath.Join(fixtureDir, name)
	b.StopTimer()
	start := time.Now()
	build(p)
	b.Logf("fixture %s built in %v", name, time.Since(start))
	b.StartTimer()
	fixtureDone[name] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func bigObjectStore(b *testing.B, size int64) string {
	return fixture(b, fmt.Sprintf("big%d.store", size), func(path string) {
		s, dev := newFileStore(b, path)
		defer dev.Close()
		data := benchData(4 << 20)
		err := s.Update(func(tx *Tx) error {
			o, err := tx.Create("src")
			if err != nil {
				return err
			}
			for off := int64(0); off < size; off += int64(len(data)) {
				if _, err := o.WriteAt(data, off); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	})
}

func bigRawFile(b *testing.B, size int64) string {
	return fixture(b, fmt.Sprintf("big%d.raw", size), func(path string) {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		data := benchData(4 << 20)
		for off := int64(0); off < size; off += int64(len(data)) {
			if _, err := f.WriteAt(data, off); err != nil {
				b.Fatal(err)
			}
		}
		f.Sync()
	})
}

func benchClone(b *testing.B, size int64) {
	b.Run("objstore", func(b *testing.B) {
		path := bigObjectStore(b, size)
		dev, err := filedev.Open(path, filedev.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer dev.Close()
		s, err := Open(dev)
		if err != nil {
			b.Fatal(err)
		}
		tx, err := s.Begin(true)
		if err != nil {
			b.Fatal(err)
		}
		defer tx.Abort()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := tx.Clone("src", fmt.Sprint("dst", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("objstore+commit", func(b *testing.B) {
		path := bigObjectStore(b, size)
		dev, err := filedev.Open(path, filedev.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer dev.Close()
		s, err := Open(dev)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.Update(func(tx *Tx) error { return tx.Clone("src", "dst") }); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.Update(func(tx *Tx) error { return tx.Delete("dst") }); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("rawcopy", func(b *testing.B) {
		src := bigRawFile(b, size)
		dst := filepath.Join(b.TempDir(), "copy")
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(dst)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(out, in); err != nil {
				b.Fatal(err)
			}
			in.Close()
			out.Close()
		}
	})
}

func BenchmarkClone1GiB(b *testing.B)  { benchClone(b, 1<<30) }
func BenchmarkClone64MiB(b *testing.B) { benchClone(b, 64<<20) }

func BenchmarkOpen100k(b *testing.B) {
	const n = 100000
	val := benchData(100)
	b.Run("objstore", func(b *testing.B) {
		path := fixture(b, "open100k.store", func(path string) {
			s, dev := newFileStore(b, path)
			defer dev.Close()
			err := s.Update(func(tx *Tx) error {
				for j := 0; j < n; j++ {
					o, err := tx.Create(fmt.Sprintf("obj/%06d", j))
					if err != nil {
						return err
					}
					if _, err := o.WriteAt(val, 0); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			dev, err := filedev.Open(path, filedev.Options{})
			if err != nil {
				b.Fatal(err)
			}
			s, err := Open(dev)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
			dev.Close()
		}
	})
	b.Run("bbolt", func(b *testing.B) {
		path := fixture(b, "open100k.bolt", func(path string) {
			db, err := bolt.Open(path, 0o644, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucket([]byte("objects"))
				if err != nil {
					return err
				}
				for j := 0; j < n; j++ {
					if err := bk.Put([]byte(fmt.Sprintf("obj/%06d", j)), val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			db, err := bolt.Open(path, 0o644, nil)
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
}
