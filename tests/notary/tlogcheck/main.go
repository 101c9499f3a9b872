// tlogcheck checks a certmail notary's tiles with golang.org/x/mod/sumdb/tlog
// and golang.org/x/mod/sumdb/note (Debian: golang-golang-x-mod-dev), a verifier
// that is not certmail's: the checkpoint signature, the tree hash from tiles,
// and optionally a consistency proof from an older tree and an inclusion proof.
//
// Build (GOPATH mode, no network): GO111MODULE=off GOPATH=/usr/share/gocode go build
//
// Usage: tlogcheck -url URL -vkey VKEY [-old N -oldroot B64] [-index I -leaf B64 -proof B64,...]
// Prints one line per check on stdout; exits 1 on the first failure.
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type tiles struct{ url string }

func (t tiles) Height() int { return 8 }

// The sumdb path is tile/H/L/N[.p/W]; C2SP tlog-tiles drops the height.
func (t tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		path := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		data, err := get(t.url + "/" + path)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

func hash(b64 string) tlog.Hash {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != len(h) {
		fail("bad hash %q", b64)
	}
	copy(h[:], b)
	return h
}

func fail(format string, args ...any) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	url := flag.String("url", "", "the notary's URL")
	vkey := flag.String("vkey", "", "the checkpoint verifier key")
	old := flag.Int64("old", 0, "an older tree size to prove consistency from")
	oldRoot := flag.String("oldroot", "", "its root hash, base64")
	index := flag.Int64("index", -1, "a record index to check an inclusion proof for")
	leaf := flag.String("leaf", "", "its leaf hash, base64")
	proof := flag.String("proof", "", "its inclusion proof, base64 hashes joined by commas")
	flag.Parse()

	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		fail("vkey: %v", err)
	}
	raw, err := get(*url + "/checkpoint")
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || len(lines) < 4 {
		fail("checkpoint text %q", n.Text)
	}
	tree := tlog.Tree{N: size, Hash: hash(lines[2])}
	fmt.Printf("ok signature %s size %d\n", lines[0], size)

	hr := tlog.TileHashReader(tree, tiles{*url})
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tree hash from tiles: %v", err)
	}
	if th != tree.Hash {
		fail("tree hash from tiles %v is not the checkpoint's %v", th, tree.Hash)
	}
	fmt.Printf("ok root %s\n", lines[2])

	if *old > 0 {
		p, err := tlog.ProveTree(size, *old, hr)
		if err != nil {
			fail("consistency proof from tiles: %v", err)
		}
		if err := tlog.CheckTree(p, size, tree.Hash, *old, hash(*oldRoot)); err != nil {
			fail("consistency %d -> %d: %v", *old, size, err)
		}
		fmt.Printf("ok consistency %d %d\n", *old, size)
	}
	if *index >= 0 {
		var p tlog.RecordProof
		for _, s := range strings.Split(*proof, ",") {
			if s != "" {
				p = append(p, hash(s))
			}
		}
		if err := tlog.CheckRecord(p, size, tree.Hash, *index, hash(*leaf)); err != nil {
			fail("inclusion of %d: %v", *index, err)
		}
		mine, err := tlog.ProveRecord(size, *index, hr)
		if err != nil {
			fail("inclusion proof from tiles: %v", err)
		}
		if len(mine) != len(p) {
			fail("inclusion proof from tiles has %d hashes, the notary's %d", len(mine), len(p))
		}
		for i := range mine {
			if mine[i] != p[i] {
				fail("inclusion proof from tiles differs at %d", i)
			}
		}
		fmt.Printf("ok inclusion %d\n", *index)
	}
}
