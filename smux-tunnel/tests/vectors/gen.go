// Command gen writes the test vectors in this directory from kcp-go 5.6.1, kcptun 20210922,
// klauspost/reedsolomon and golang/snappy, as Debian installs them, so that the Rust tests
// check smux-tunnel's kcptun transport against the Go code byte for byte.
//
// Run it here, in GOPATH mode against Debian's Go sources (packages golang-go,
// golang-github-xtaci-kcp-dev, golang-github-golang-snappy-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run gen.go
//
// The files it writes are text, one record a line, fields separated by spaces, bytes in hex;
// lines starting with '#' are comments. The captured sessions (session-*.txt) hold random
// nonces and KCP timestamps, so they differ from run to run; the tests depend only on each
// file being consistent with itself, never on its exact bytes.
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/reedsolomon"
	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
)

// kcptun's default --key, and its key derivation (client/main.go, server/main.go).
const defaultKey = "it's a secrect"

func deriveKey(key string) []byte {
	return pbkdf2.Key([]byte(key), []byte("kcp-go"), 4096, 32, sha1.New)
}

// blockCrypt is kcptun's crypt name to BlockCrypt mapping, unknown names falling back to aes
// as kcptun's do.
func blockCrypt(name string, pass []byte) kcp.BlockCrypt {
	var block kcp.BlockCrypt
	var err error
	switch name {
	case "sm4":
		block, err = kcp.NewSM4BlockCrypt(pass[:16])
	case "tea":
		block, err = kcp.NewTEABlockCrypt(pass[:16])
	case "xor":
		block, err = kcp.NewSimpleXORBlockCrypt(pass)
	case "none":
		block, err = kcp.NewNoneBlockCrypt(pass)
	case "aes-128":
		block, err = kcp.NewAESBlockCrypt(pass[:16])
	case "aes-192":
		block, err = kcp.NewAESBlockCrypt(pass[:24])
	case "blowfish":
		block, err = kcp.NewBlowfishBlockCrypt(pass)
	case "twofish":
		block, err = kcp.NewTwofishBlockCrypt(pass)
	case "cast5":
		block, err = kcp.NewCast5BlockCrypt(pass[:16])
	case "3des":
		block, err = kcp.NewTripleDESBlockCrypt(pass[:24])
	case "xtea":
		block, err = kcp.NewXTEABlockCrypt(pass[:16])
	case "salsa20":
		block, err = kcp.NewSalsa20BlockCrypt(pass)
	default:
		block, err = kcp.NewAESBlockCrypt(pass)
	}
	check(err)
	return block
}

var cryptNames = []string{"aes", "aes-128", "aes-192", "salsa20", "xor", "none",
	"sm4", "tea", "blowfish", "twofish", "cast5", "3des", "xtea"}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func h(b []byte) string { return hex.EncodeToString(b) }

func create(name string) *os.File {
	f, err := os.Create(name)
	check(err)
	return f
}

// pattern is deterministic filler: byte i of it is a simple function of i and seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+int(seed)) ^ byte(i>>8)
	}
	return b
}

// crypt.txt: the derived key, then for each crypt name and payload length a datagram as
// kcp-go's output lays it out (fixed nonce, CRC32 of the payload, payload), before and after
// BlockCrypt.Encrypt.
func genCrypt() {
	f := create("crypt.txt")
	defer f.Close()
	pass := deriveKey(defaultKey)
	fmt.Fprintf(f, "# pbkdf2-sha1(%q, \"kcp-go\", 4096 rounds, 32 bytes)\n", defaultKey)
	fmt.Fprintf(f, "key %s %s\n", h([]byte(defaultKey)), h(pass))
	fmt.Fprintln(f, "# crypt <name> <plaintext datagram> <encrypted datagram>")
	lengths := []int{0, 1, 11, 12, 13, 24, 44, 107, 108, 109, 236, 1330}
	for _, name := range cryptNames {
		block := blockCrypt(name, pass)
		for i, n := range lengths {
			pt := make([]byte, 20+n)
			for k := 0; k < 16; k++ {
				pt[k] = byte(0xa0 + k + i)
			}
			copy(pt[20:], pattern(n, byte(i)))
			binary.LittleEndian.PutUint32(pt[16:], crc32.ChecksumIEEE(pt[20:]))
			ct := make([]byte, len(pt))
			block.Encrypt(ct, pt)
			back := make([]byte, len(ct))
			block.Decrypt(back, ct)
			if !bytes.Equal(back, pt) {
				panic("decrypt does not invert encrypt: " + name)
			}
			fmt.Fprintf(f, "crypt %s %s %s\n", name, h(pt), h(ct))
		}
	}
}

// rs.txt: klauspost/reedsolomon's default (Vandermonde) code: data shards in, parity out.
func genRS() {
	f := create("rs.txt")
	defer f.Close()
	fmt.Fprintln(f, "# rs <data shards> <parity shards> <data shard, ...> <parity shard, ...> (comma-separated)")
	r := rand.New(rand.NewSource(24))
	shapes := [][2]int{{10, 3}, {4, 2}, {1, 1}, {3, 1}, {20, 10}, {2, 5}, {128, 128}}
	for _, s := range shapes {
		sizes := []int{1, 37, 1322}
		if s[0]+s[1] > 100 {
			sizes = sizes[:2]
		}
		for _, size := range sizes {
			enc, err := reedsolomon.New(s[0], s[1])
			check(err)
			shards := make([][]byte, s[0]+s[1])
			for i := range shards {
				shards[i] = make([]byte, size)
				if i < s[0] {
					r.Read(shards[i])
				}
			}
			check(enc.Encode(shards))
			var data, parity []string
			for i, sh := range shards {
				if i < s[0] {
					data = append(data, h(sh))
				} else {
					parity = append(parity, h(sh))
				}
			}
			fmt.Fprintf(f, "rs %d %d %s %s\n", s[0], s[1], strings.Join(data, ","), strings.Join(parity, ","))
		}
	}
}

// capture is a net.PacketConn that records what a kcp-go session sends and never receives.
type capture struct {
	mu   sync.Mutex
	sent [][]byte
	done chan struct{}
}

func (c *capture) ReadFrom(b []byte) (int, net.Addr, error) {
	<-c.done
	return 0, nil, net.ErrClosed
}

func (c *capture) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, append([]byte(nil), b...))
	return len(b), nil
}

func (c *capture) Close() error                       { return nil }
func (c *capture) LocalAddr() net.Addr                { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *capture) SetDeadline(t time.Time) error      { return nil }
func (c *capture) SetReadDeadline(t time.Time) error  { return nil }
func (c *capture) SetWriteDeadline(t time.Time) error { return nil }

// session-<crypt>-<ds>-<ps>.txt: the datagrams a real kcp-go session sends, in order, for
// writes of varied sizes (so FEC groups hold shards of different lengths). kcp-go's output
// runs FEC, then CRC and encryption, as kcptun uses it.
func genSession(crypt string, ds, ps int) {
	name := fmt.Sprintf("session-%s-%d-%d.txt", crypt, ds, ps)
	f := create(name)
	defer f.Close()
	pass := deriveKey(defaultKey)
	conn := &capture{done: make(chan struct{})}
	raddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
	sess, err := kcp.NewConn3(0x01020304, raddr, blockCrypt(crypt, pass), ds, ps, conn)
	check(err)
	sess.SetStreamMode(false)
	sess.SetWriteDelay(false)
	sess.SetNoDelay(1, 10, 2, 1)
	sess.SetWindowSize(1024, 1024)
	sess.SetMtu(1350)
	// KCP holds at most the peer's initial window (32) of segments in flight: 32 writes, each
	// flushed as one packet of one segment.
	sizes := []int{1, 700, 1200, 5, 1298, 64, 999, 2, 100, 1000,
		30, 31, 1250, 400, 3, 800, 17, 1298, 60, 61,
		1100, 9, 300, 301, 1298, 7, 70, 700, 1001, 11,
		123, 456}
	for i, n := range sizes {
		_, err := sess.Write(pattern(n, byte(i)))
		check(err)
	}
	conn.mu.Lock()
	sent := conn.sent
	conn.sent = nil
	conn.mu.Unlock()
	close(conn.done)
	sess.Close()

	fmt.Fprintf(f, "# kcp-go session, crypt %s, key %q, datashard %d, parityshard %d, mtu 1350\n", crypt, defaultKey, ds, ps)
	fmt.Fprintln(f, "# datagram <bytes sent>")
	for _, d := range sent {
		fmt.Fprintf(f, "datagram %s\n", h(d))
	}
}

// noise is incompressible filler that the Rust tests regenerate: the low byte of each step of
// a 32-bit xorshift (13, 17, 5) started at seed.
func noise(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// snappy.txt: what kcptun's CompStream writes (snappy.NewBufferedWriter, Flush after every
// Write) for each of a sequence of writes. The plaintexts are described, not stored: the
// tests rebuild them.
func genSnappy() {
	f := create("snappy.txt")
	defer f.Close()
	text := []byte(strings.Repeat("smux over KCP over UDP, kcptun's transport. ", 3000))
	type write struct {
		desc string
		p    []byte
	}
	writes := []write{
		{"text 5 0", text[:5]},
		{"text 0 0", text[:0]},
		{"text 1000 0", text[:1000]},
		{"noise 100 1", noise(100, 1)},
		// More than 64 KiB: a full chunk, then the rest.
		{fmt.Sprintf("text %d 0", len(text)), text},
		// Exactly one full chunk.
		{"text 65536 0", text[:65536]},
		// Incompressible and one byte over: an uncompressed full chunk, then one byte.
		{"noise 65537 2", noise(65537, 2)},
		{"zeros 16 0", make([]byte, 16)},
	}
	var out bytes.Buffer
	w := snappy.NewBufferedWriter(&out)
	fmt.Fprintln(f, "# the text: \"smux over KCP over UDP, kcptun's transport. \" repeated; noise: see gen.go")
	fmt.Fprintln(f, "# write <text|noise|zeros> <length> <noise seed> <bytes the stream gains>")
	for _, wr := range writes {
		before := out.Len()
		_, err := w.Write(wr.p)
		check(err)
		check(w.Flush())
		fmt.Fprintf(f, "write %s %s\n", wr.desc, h(out.Bytes()[before:]))
	}
}

func main() {
	genCrypt()
	genRS()
	genSession("aes", 10, 3)
	genSession("salsa20", 4, 2)
	genSession("aes-128", 1, 1)
	genSession("none", 0, 0)
	genSnappy()
}
