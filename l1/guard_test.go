package l1_test

import (
	"fmt"
	"testing"

	"github.com/strata-cache/strata/l1"
)

// TestFillGuard covers every way a fill can be overtaken between its Begin
// and its SetIf: the stale fill never lands, and a fill nothing overtook
// does.
func TestFillGuard(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		tagged := func(key, value string, tags ...string) *l1.Entry[string] {
			e := entry(key, value, now())
			e.Tags = tags
			return e
		}
		tests := []struct {
			name    string
			between func(c *l1.Cache[string]) // runs after Begin, before SetIf
			fill    *l1.Entry[string]
			want    string // "" for a miss
		}{
			{"nothing in between", func(*l1.Cache[string]) {}, entry("k", "old", now()), "old"},
			{"Set", func(c *l1.Cache[string]) { c.Set(entry("k", "new", now()), now()) }, entry("k", "old", now()), "new"},
			{"Delete", func(c *l1.Cache[string]) { c.Delete("k") }, entry("k", "old", now()), ""},
			{"Clear", func(c *l1.Cache[string]) { c.Clear() }, entry("k", "old", now()), ""},
			{"InvalidateTags of a fill's tag", func(c *l1.Cache[string]) { c.InvalidateTags("t") }, tagged("k", "old", "t"), ""},
			{"InvalidateTags of another tag", func(c *l1.Cache[string]) {
				c.InvalidateTags(l1.OtherStripe(c.Guard(), "t", "u"))
			}, tagged("k", "old", "t"), "old"},
			{"a write of another key", func(c *l1.Cache[string]) {
				c.Delete(l1.OtherStripe(c.Guard(), "k", "other"))
			}, entry("k", "old", now()), "old"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newCache(t, l1.Config{Engine: engine})
				f := c.Begin("k")
				tt.between(c)
				installed := c.SetIf(tt.fill, f, now())
				if tt.want == "" {
					wantMiss(t, c, "k")
				} else {
					wantHit(t, c, "k", tt.want)
				}
				if wantInstalled := tt.want == "old"; installed != wantInstalled {
					t.Errorf("SetIf reported %v, want %v", installed, wantInstalled)
				}
			})
		}
	})
}

// TestSetAfterDropsWhenOvertaken: a write whose copy in the tier behind L1
// was overtaken by another write leaves L1 empty (the tier may hold either),
// and a write fences the fills that began before it.
func TestSetAfterDropsWhenOvertaken(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		c := newCache(t, l1.Config{Engine: engine})
		f := c.Begin("k")
		if !c.SetAfter(entry("k", "mine", now()), f, now()) {
			t.Fatal("SetAfter with nothing in between was refused")
		}
		wantHit(t, c, "k", "mine")

		// Another write of k lands between this write's Begin and its install:
		// the tier behind may hold either, so L1 holds neither.
		f = c.Begin("k")
		c.Set(entry("k", "theirs", now()), now())
		if c.SetAfter(entry("k", "mine", now()), f, now()) {
			t.Error("SetAfter overtaken by a Set was installed")
		}
		wantMiss(t, c, "k")

		// A write fences fills that began before it.
		f = c.Begin("k")
		c.SetAfter(entry("k", "written", now()), c.Begin("k"), now())
		if c.SetIf(entry("k", "read before", now()), f, now()) {
			t.Error("a fill read before a SetAfter was installed")
		}
		wantHit(t, c, "k", "written")
	})
}

func TestGuardWithoutCache(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		g := l1.NewGuard()
		f := g.Begin("k")
		if g.Moved("k", f, []string{"t"}) {
			t.Fatal("Moved with nothing in between")
		}
		g.InvalidateTags("t")
		if !g.Moved("k", f, []string{"t"}) || g.Moved("k", f, nil) {
			t.Error("a tag invalidation moved the wrong reads")
		}
		f = g.Begin("k")
		g.Write("k")
		if !g.Moved("k", f, nil) {
			t.Error("Write did not move k")
		}
		f = g.Begin("k")
		g.WriteAll()
		if !g.Moved("k", f, nil) {
			t.Error("WriteAll did not move k")
		}
	})
}

// A fill of data read from the tier behind L1 takes a fence before the read
// and installs with SetIf: a write or invalidation in between wins.
func ExampleCache_SetIf() {
	c, err := l1.New[string](l1.Config{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	now := int64(1_000_000_000)
	fill := func(value string) *l1.Entry[string] {
		return &l1.Entry[string]{Key: "user:1", Value: value, FreshUntil: now + 60e9, Size: len(value)}
	}

	f := c.Begin("user:1")             // before reading the database (or L2)
	read := fill("Ada")                // ... what the read returned
	c.Delete("user:1")                 // meanwhile, a write invalidates the key
	fmt.Println(c.SetIf(read, f, now)) // the stale fill does not land

	f = c.Begin("user:1")
	fmt.Println(c.SetIf(fill("Ada Lovelace"), f, now))
	e, _ := c.Get("user:1")
	fmt.Println(e.Value)
	// Output:
	// false
	// true
	// Ada Lovelace
}
