// Command smuxpeer is the Go side of the interoperability tests in
// smux-tokio/tests/interop_go.rs: github.com/xtaci/smux 1.5.16 as a server or a client over
// one TCP connection, running one scripted behaviour.
//
// Output, one line each on stdout: "LISTEN <addr>" (server mode, once listening), "OK ..."
// (open, split-echo: every stream verified), "SENT ..." (send), "REPLIED ..." and
// "ECHOED ..." (reply, and echo with -verbose), "SESSION CLOSED: <reason>" (the session
// ended). Failures go to stderr and exit with status 1.
//
// After its work every behaviour keeps the session until the peer ends it (or keep-alive
// does): closing a TCP socket while input is still arriving resets the connection, which
// would turn the peer's orderly end into an error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/xtaci/smux"
)

var (
	mode       = flag.String("mode", "server", "server (listen, serve one connection) or client (dial)")
	addr       = flag.String("addr", "127.0.0.1:0", "server: listen address; client: address to dial")
	behavior   = flag.String("behavior", "echo", "echo, open, split-echo, idle, send, reply or read-close")
	version    = flag.Int("version", 1, "smux protocol version, 1 or 2")
	kaInterval = flag.Duration("keepalive-interval", smux.DefaultConfig().KeepAliveInterval, "NOP interval")
	kaTimeout  = flag.Duration("keepalive-timeout", smux.DefaultConfig().KeepAliveTimeout, "close the session after this long without input")
	kaDisabled = flag.Bool("keepalive-disabled", false, "no keep-alive at all")
	maxFrame   = flag.Int("max-frame", smux.DefaultConfig().MaxFrameSize, "largest payload per frame we send")
	maxStream  = flag.Int("max-stream-buffer", smux.DefaultConfig().MaxStreamBuffer, "version 2: per-stream window")
	maxRecv    = flag.Int("max-receive-buffer", smux.DefaultConfig().MaxReceiveBuffer, "session receive budget")
	streams    = flag.Int("streams", 1, "open, split-echo: streams to open")
	size       = flag.Int("size", 1024, "open, split-echo, send, reply, read-close: bytes per stream (open -random: the largest)")
	random     = flag.Bool("random", false, "open: stream i sends a pseudo-random size in 1..=size (seed i)")
	verbose    = flag.Bool("verbose", false, "echo: print ECHOED <id> <bytes> <error> per stream")
)

func main() {
	flag.Parse()
	cfg := smux.DefaultConfig()
	cfg.Version = *version
	cfg.KeepAliveInterval = *kaInterval
	cfg.KeepAliveTimeout = *kaTimeout
	cfg.KeepAliveDisabled = *kaDisabled
	cfg.MaxFrameSize = *maxFrame
	cfg.MaxStreamBuffer = *maxStream
	cfg.MaxReceiveBuffer = *maxRecv

	conn, err := connect()
	if err != nil {
		fail("connect: %v", err)
	}
	var sess *smux.Session
	if *mode == "server" {
		sess, err = smux.Server(conn, cfg)
	} else {
		sess, err = smux.Client(conn, cfg)
	}
	if err != nil {
		fail("session: %v", err)
	}

	switch *behavior {
	case "echo":
		err = echo(sess)
	case "open":
		if err := openStreams(sess); err != nil {
			fail("open: %v", err)
		}
		fmt.Printf("OK %d streams\n", *streams)
		err = waitEnd(sess)
	case "split-echo":
		if err := splitEcho(sess); err != nil {
			fail("split-echo: %v", err)
		}
		fmt.Printf("OK %d streams\n", *streams)
		err = waitEnd(sess)
	case "idle":
		// OpenStream fails if the session ended right after its SYN (a peer that rejects
		// the SYN); that is the end we wait for anyway.
		if _, err = sess.OpenStream(); err == nil {
			err = waitEnd(sess)
		}
	case "send":
		if err := send(sess); err != nil {
			fail("send: %v", err)
		}
		err = waitEnd(sess)
	case "reply":
		err = reply(sess)
	case "read-close":
		err = readClose(sess)
	default:
		fail("unknown behavior %q", *behavior)
	}
	fmt.Printf("SESSION CLOSED: %v\n", err)
	sess.Close()
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "smuxpeer: "+format+"\n", args...)
	os.Exit(1)
}

func connect() (net.Conn, error) {
	if *mode == "client" {
		return net.Dial("tcp", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	fmt.Printf("LISTEN %s\n", ln.Addr())
	return ln.Accept()
}

// waitEnd returns why the session ended: AcceptStream fails on a transport error, a protocol
// error, or a close (keep-alive timeout). Streams the peer opens meanwhile are closed.
func waitEnd(sess *smux.Session) error {
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return err
		}
		st.Close()
	}
}

// echo copies every accepted stream back to itself until its end, then closes it.
func echo(sess *smux.Session) error {
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return err
		}
		go func() {
			n, err := io.Copy(st, st)
			if *verbose {
				fmt.Printf("ECHOED %d %d %v\n", st.ID(), n, err)
			}
			st.Close()
		}()
	}
}

// reply reads every accepted stream to its end (the peer's FIN), then writes -size bytes of
// the pattern (seed 0) and closes it: how far can Go write after the peer's FIN?
func reply(sess *smux.Session) error {
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return err
		}
		go func() {
			got, rerr := io.Copy(io.Discard, st)
			buf := make([]byte, *size)
			newPattern(0).fill(buf)
			n, werr := st.Write(buf)
			fmt.Printf("REPLIED %d read %d (%v) wrote %d (%v)\n", st.ID(), got, rerr, n, werr)
			st.Close()
		}()
	}
}

// readClose reads -size bytes of the pattern (seed 0) from every accepted stream, checking
// them, then closes it, whatever the peer is still sending: 1.5.16 forgets a closed stream,
// and drops the data that still arrives for it without a window update.
func readClose(sess *smux.Session) error {
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return err
		}
		go func() {
			rerr := readPattern(st, 0, *size)
			fmt.Printf("READ-CLOSED %d read %d (%v)\n", st.ID(), *size, rerr)
			st.Close()
		}()
	}
}

// send writes -size bytes of the pattern (seed 0) on one stream without reading, then closes it.
func send(sess *smux.Session) error {
	st, err := sess.OpenStream()
	if err != nil {
		return err
	}
	if err := writePattern(st, 0, *size); err != nil {
		return err
	}
	fmt.Printf("SENT %d\n", *size)
	return st.Close()
}

// openStreams opens -streams streams at once; stream i writes its bytes (pattern seed i) while
// reading back as many, checks them, and closes.
func openStreams(sess *smux.Session) error {
	errs := make(chan error, *streams)
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := roundTrip(sess, i); err != nil {
				errs <- fmt.Errorf("stream #%d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return fmt.Errorf("%d of %d streams failed, first: %v", len(all), *streams, all[0])
	}
	return nil
}

// splitEcho opens -streams streams, then one goroutine writes -size bytes (pattern seed i) on
// each stream in turn, stream 0 first, while another reads the echo of each stream in the same
// order, checks it and closes the stream. 1.5.16 has no half-close: the peer's echo sees the
// end of a stream only at that Close, after its whole echo has been read.
func splitEcho(sess *smux.Session) error {
	sts := make([]*smux.Stream, *streams)
	for i := range sts {
		st, err := sess.OpenStream()
		if err != nil {
			return fmt.Errorf("opening stream #%d: %v", i, err)
		}
		sts[i] = st
	}
	written := make(chan error, 1)
	go func() {
		for i, st := range sts {
			if err := writePattern(st, uint64(i), *size); err != nil {
				written <- fmt.Errorf("stream #%d (id %d): write: %v", i, st.ID(), err)
				return
			}
		}
		written <- nil
	}()
	var rerr error
	for i, st := range sts {
		if rerr == nil {
			if err := readPattern(st, uint64(i), *size); err != nil {
				rerr = fmt.Errorf("stream #%d (id %d): %v", i, st.ID(), err)
			}
		}
		st.Close() // after a failure too: unblocks the writer
	}
	if werr := <-written; werr != nil && rerr == nil {
		return werr
	}
	return rerr
}

func roundTrip(sess *smux.Session, i int) error {
	st, err := sess.OpenStream()
	if err != nil {
		return err
	}
	n := *size
	if *random {
		n = 1 + int(newRng(uint64(i)^0x5151).next()%uint64(*size))
	}
	written := make(chan error, 1)
	go func() { written <- writePattern(st, uint64(i), n) }()
	rerr := readPattern(st, uint64(i), n)
	st.Close() // also unblocks the writer if the read failed
	if werr := <-written; werr != nil && rerr == nil {
		return fmt.Errorf("id %d: write: %v", st.ID(), werr)
	}
	if rerr != nil {
		return fmt.Errorf("id %d: %v", st.ID(), rerr)
	}
	return nil
}

func writePattern(w io.Writer, seed uint64, n int) error {
	p := newPattern(seed)
	buf := make([]byte, 256*1024)
	for n > 0 {
		chunk := buf
		if n < len(chunk) {
			chunk = chunk[:n]
		}
		p.fill(chunk)
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= len(chunk)
	}
	return nil
}

// readPattern reads exactly n bytes and checks them against the pattern.
func readPattern(r io.Reader, seed uint64, n int) error {
	p := newPattern(seed)
	buf := make([]byte, 64*1024)
	want := make([]byte, len(buf))
	for got := 0; got < n; {
		chunk := buf
		if n-got < len(chunk) {
			chunk = chunk[:n-got]
		}
		k, err := r.Read(chunk)
		if k > 0 {
			p.fill(want[:k])
			for j := 0; j < k; j++ {
				if chunk[j] != want[j] {
					return fmt.Errorf("byte %d of %d differs: got %#x, want %#x", got+j, n, chunk[j], want[j])
				}
			}
			got += k
		}
		if err != nil && got < n {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("end of stream after %d of %d bytes", got, n)
			}
			return fmt.Errorf("read after %d of %d bytes: %v", got, n, err)
		}
	}
	return nil
}

// rng is xorshift64* seeded through a splitmix64 step, as Rng in the Rust tests.
type rng struct{ s uint64 }

func newRng(seed uint64) *rng {
	z := seed + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	if z == 0 {
		z = 0x2545F4914F6CDD1D
	}
	return &rng{z}
}

func (r *rng) next() uint64 {
	x := r.s
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	r.s = x
	return x * 0x2545F4914F6CDD1D
}

// pattern is an endless byte sequence: the little-endian bytes of successive rng outputs
// (ByteGen in the Rust tests).
type pattern struct {
	r    *rng
	word uint64
	left int
}

func newPattern(seed uint64) *pattern { return &pattern{r: newRng(seed ^ 0xC0FFEE00D15EA5E5)} }

func (p *pattern) fill(b []byte) {
	for i := range b {
		if p.left == 0 {
			p.word = p.r.next()
			p.left = 8
		}
		b[i] = byte(p.word)
		p.word >>= 8
		p.left--
	}
}
