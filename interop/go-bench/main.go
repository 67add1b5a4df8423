// Command go-bench is the Go side of the smux benchmark suite: one workload of
// github.com/xtaci/smux 1.5.16 (the release Debian packages), with both the client and the
// server session in this process over one TCP connection on loopback (the server listens on
// 127.0.0.1:0), each session with smux.DefaultConfig() except Version. The harness starts one
// process per measurement.
//
// Usage:
//
//	go-bench WORKLOAD [key=value ...]
//
// Keys every workload takes: v=1|2 (protocol version, default 1) and timeout=SECS (default
// 600; after that the run fails instead of hanging). Values are positive integers.
//
// Output: exactly one line on stdout, "RESULT" followed by space-separated key=value pairs:
// the workload's keys below, then peak_rss_kib=N (VmHWM from /proc/self/status, read after
// the measurement). Seconds are printed with %.6f, microseconds with %.3f. On any error the
// program prints a message to stderr and exits with status 1, printing no RESULT line.
//
// Workloads (the clock always starts just before the client's first OpenStream):
//
//	stream mib=N (1024) write=W (65536)
//	    The client opens one stream, writes N MiB in W-byte writes from one reused buffer and
//	    closes it; the server accepts it and reads with a 64 KiB buffer until EOF. The clock
//	    stops when the server's read returns EOF (after all the bytes).
//	    Prints: bytes=B secs=S
//	streams64 mib=N (1024) streams=K (64) write=W (65536)
//	    The client opens K streams one after another, then writes N MiB / K on each (W-byte
//	    writes, one goroutine and one buffer per stream) and closes each; the server accepts
//	    the K streams and reads each in its own goroutine until EOF. The clock stops at the
//	    last EOF. Prints: bytes=B secs=S (B is K times the per-stream share)
//	handshake ops=N (20000)
//	    N times in sequence: the client opens a stream, writes 8 bytes, reads the 8 bytes
//	    back and closes it. The server accepts in a loop; for each stream a goroutine reads
//	    8 bytes, writes them back, reads until EOF and closes. Prints: ops=N secs=S
//	openclose ops=N (50000)
//	    The client opens N streams and closes each at once (no payload, no waiting); the
//	    server accepts N streams and closes each (handing it to one closing goroutine, in
//	    accept order: closing inside the accept loop deadlocks smux 1.5.16 once its accept
//	    backlog of 1024 fills). The clock stops at the server's N-th accept.
//	    Prints: ops=N secs=S
//	pingpong iters=N (20000)
//	    One stream: the client writes 64 bytes and reads 64 back (io.ReadFull), the server
//	    echoes them (io.ReadFull, then Write). 1000 warm-up round trips are not recorded; the
//	    N after them each record time.Now() before the write to after the read. Percentiles
//	    are nearest-rank: the sorted sample at index ceil(p/100*N)-1.
//	    Prints: p50_us=X p99_us=Y
//	idle streams=N (10000)
//	    After runtime.GC(), runtime.MemStats.HeapAlloc is the baseline (the sessions exist;
//	    the slices that keep the streams are allocated beforehand). Then N times in one
//	    goroutine: the client opens a stream, the server accepts it; both ends are kept, with
//	    no goroutine per stream and no data. Then runtime.GC() and HeapAlloc again.
//	    mem_per_stream is (after-before)/N bytes, both ends of a stream together; first_secs
//	    and last_secs time the first and the last batch of min(1000, N) opens.
//	    Prints: mem_per_stream=M first_secs=S last_secs=S
//
// The WAN workloads (bench/src/wan.rs describes them; the figures are computed the same way)
// run across the harness's emulated link: the server session listens on 127.0.0.1:listen and
// the client dials 127.0.0.1:dial, the link's end, which connects to it. Each takes mbit, rtt
// (ms), queue (ms), wanmib, secs, listen, dial, and lowat (KiB of TCP_NOTSENT_LOWAT on both
// sockets; not set when absent).
//
//	wan-stream: one stream of wanmib MiB. Prints: link_fraction=F t80_secs=S secs=S
//	wan-mixed: 8 bulk streams and 64-byte requests on a ninth, secs seconds.
//	    Prints: bulk_mbit=R p50_ms=X p99_ms=Y requests=N
//	wan-fetch: a fresh stream fetching 1 MiB, on the new connection and after 16 MiB and a
//	    second idle. Prints: cold_rtts=X warm_rtts=Y
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtaci/smux"
)

const (
	mib   = 1 << 20
	chunk = 64 << 10
	// pingpong: round trips before the recorded ones, and the message size.
	warmup  = 1000
	msgSize = 64
	// idle: opens per timed batch.
	batch = 1000
)

// workloads maps a workload's name to its keys and their defaults (besides v and timeout).
var workloads = map[string]map[string]int{
	"stream":     {"mib": 1024, "write": chunk},
	"streams64":  {"mib": 1024, "streams": 64, "write": chunk},
	"handshake":  {"ops": 20000},
	"openclose":  {"ops": 50000},
	"pingpong":   {"iters": 20000},
	"idle":       {"streams": 10000},
	"wan-stream": wanKeys,
	"wan-mixed":  wanKeys,
	"wan-fetch":  wanKeys,
}

// wanKeys: the WAN workloads' keys; listen and dial have no default (0 is refused).
var wanKeys = map[string]int{
	"mbit": 100, "rtt": 50, "queue": 50, "wanmib": 64, "secs": 8, "lowat": 0, "listen": 0, "dial": 0,
	// Ours only (window tuning off); accepted and ignored.
	"notuning": 0,
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: go-bench WORKLOAD [key=value ...]; workloads: stream, streams64, handshake, openclose, pingpong, idle")
	}
	name := os.Args[1]
	defaults, ok := workloads[name]
	if !ok {
		fail("unknown workload %q", name)
	}
	p, err := parseArgs(os.Args[2:], defaults)
	if err != nil {
		fail("%s: %v", name, err)
	}
	if p["v"] != 1 && p["v"] != 2 {
		fail("v=%d: the version is 1 or 2", p["v"])
	}
	time.AfterFunc(time.Duration(p["timeout"])*time.Second, func() {
		fail("%s: timed out after %d s", name, p["timeout"])
	})

	var client, server *smux.Session
	if strings.HasPrefix(name, "wan-") {
		if p["listen"] == 0 || p["dial"] == 0 {
			fail("%s: listen= and dial= are required", name)
		}
		client, server = sessionsVia(p["v"], p["listen"], p["dial"], p["lowat"])
	} else {
		client, server = sessions(p["v"])
	}
	rtt := time.Duration(p["rtt"]) * time.Millisecond
	var result string
	switch name {
	case "wan-stream":
		result = wanStream(client, server, int64(p["wanmib"])*mib, rtt, float64(p["mbit"])*1e6)
	case "wan-mixed":
		result = wanMixed(client, server, time.Duration(p["secs"])*time.Second)
	case "wan-fetch":
		result = wanFetch(client, server, rtt)
	case "stream":
		result = stream(client, server, int64(p["mib"])*mib, p["write"])
	case "streams64":
		result = streams64(client, server, int64(p["mib"])*mib, p["streams"], p["write"])
	case "handshake":
		result = handshake(client, server, p["ops"])
	case "openclose":
		result = openclose(client, server, p["ops"])
	case "pingpong":
		result = pingpong(client, server, p["iters"])
	case "idle":
		result = idle(client, server, p["streams"])
	}
	fmt.Printf("RESULT %s peak_rss_kib=%d\n", result, peakRSS())
}

// parseArgs reads key=value arguments: only the keys in defaults, v and timeout, each a
// positive integer. Missing keys get their default.
func parseArgs(args []string, defaults map[string]int) (map[string]int, error) {
	p := map[string]int{"v": 1, "timeout": 600}
	for k, v := range defaults {
		p[k] = v
	}
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, fmt.Errorf("argument %q is not key=value", arg)
		}
		if _, known := p[k]; !known {
			return nil, fmt.Errorf("unknown key %q", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s=%s: not a positive integer", k, v)
		}
		p[k] = n
	}
	return p, nil
}

// sessions connects a client and a server session over one loopback TCP connection.
func sessions(version int) (client, server *smux.Session) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check("listen", err)
	return connect(version, ln, ln.Addr().String(), 0)
}

// connect dials addr, which leads to ln, and makes the client session on the dialled
// connection and the server session on the accepted one; it closes ln. lowat > 0 sets
// TCP_NOTSENT_LOWAT (KiB) on both sockets.
func connect(version int, ln net.Listener, addr string, lowat int) (client, server *smux.Session) {
	defer ln.Close()
	type accepted struct {
		conn net.Conn
		err  error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	cc, err := net.Dial("tcp", addr)
	check("dial", err)
	a := <-ch
	check("accept", a.err)
	if lowat > 0 {
		for _, c := range []net.Conn{cc, a.conn} {
			raw, err := c.(*net.TCPConn).SyscallConn()
			check("raw conn", err)
			var serr error
			err = raw.Control(func(fd uintptr) {
				// TCP_NOTSENT_LOWAT is 25 on Linux.
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 25, lowat*1024)
			})
			check("control", err)
			check("TCP_NOTSENT_LOWAT", serr)
		}
	}
	cfg := smux.DefaultConfig()
	cfg.Version = version
	client, err = smux.Client(cc, cfg)
	check("client session", err)
	server, err = smux.Server(a.conn, cfg)
	check("server session", err)
	return client, server
}

// drain reads s with a buffer of size bytes until EOF and returns the count and the time
// of the EOF.
func drain(s *smux.Stream, size int) (int64, time.Time) {
	buf := make([]byte, size)
	var got int64
	for {
		n, err := s.Read(buf)
		got += int64(n)
		if err == io.EOF {
			return got, time.Now()
		}
		check("server read", err)
	}
}

// writeN writes n bytes to s in writes of at most len(buf).
func writeN(s *smux.Stream, buf []byte, n int64) {
	for n > 0 {
		w := int64(len(buf))
		if n < w {
			w = n
		}
		_, err := s.Write(buf[:w])
		check("client write", err)
		n -= w
	}
}

type drained struct {
	bytes int64
	end   time.Time
}

func stream(client, server *smux.Session, total int64, write int) string {
	done := make(chan drained, 1)
	go func() {
		s, err := server.AcceptStream()
		check("accept stream", err)
		got, end := drain(s, chunk)
		s.Close()
		done <- drained{got, end}
	}()

	buf := make([]byte, write)
	start := time.Now()
	s, err := client.OpenStream()
	check("open stream", err)
	writeN(s, buf, total)
	check("client close", s.Close())
	d := <-done
	if d.bytes != total {
		fail("stream: the server read %d bytes, not %d", d.bytes, total)
	}
	return fmt.Sprintf("bytes=%d secs=%.6f", d.bytes, d.end.Sub(start).Seconds())
}

func streams64(client, server *smux.Session, total int64, k, write int) string {
	per := total / int64(k)
	done := make(chan drained, k)
	go func() {
		for i := 0; i < k; i++ {
			s, err := server.AcceptStream()
			check("accept stream", err)
			go func() {
				got, end := drain(s, chunk)
				s.Close()
				done <- drained{got, end}
			}()
		}
	}()

	start := time.Now()
	streams := make([]*smux.Stream, k)
	for i := range streams {
		s, err := client.OpenStream()
		check("open stream", err)
		streams[i] = s
	}
	for _, s := range streams {
		go func(s *smux.Stream) {
			writeN(s, make([]byte, write), per)
			check("client close", s.Close())
		}(s)
	}
	var sum int64
	var last time.Time
	for i := 0; i < k; i++ {
		d := <-done
		if d.bytes != per {
			fail("streams64: the server read %d bytes on a stream, not %d", d.bytes, per)
		}
		sum += d.bytes
		if d.end.After(last) {
			last = d.end
		}
	}
	return fmt.Sprintf("bytes=%d secs=%.6f", sum, last.Sub(start).Seconds())
}

func handshake(client, server *smux.Session, ops int) string {
	go func() {
		for {
			s, err := server.AcceptStream()
			if err != nil {
				return // the session ended: only at exit
			}
			go func() {
				var b [8]byte
				_, err := io.ReadFull(s, b[:])
				check("server read", err)
				_, err = s.Write(b[:])
				check("server write", err)
				drain(s, len(b))
				s.Close()
			}()
		}
	}()

	var out, in [8]byte
	start := time.Now()
	for i := 0; i < ops; i++ {
		s, err := client.OpenStream()
		check("open stream", err)
		binary.LittleEndian.PutUint64(out[:], uint64(i))
		_, err = s.Write(out[:])
		check("client write", err)
		_, err = io.ReadFull(s, in[:])
		check("client read", err)
		if in != out {
			fail("handshake: op %d: echo %x, sent %x", i, in, out)
		}
		check("client close", s.Close())
	}
	secs := time.Since(start).Seconds()
	return fmt.Sprintf("ops=%d secs=%.6f", ops, secs)
}

func openclose(client, server *smux.Session, ops int) string {
	// The server closes what it accepts in a second goroutine: smux 1.5.16's recvLoop hands
	// a new stream to AcceptStream through a channel of 1024 while holding the session's
	// stream lock, and Stream.Close takes that lock, so an accept loop that closes inline
	// deadlocks once 1024 SYNs are waiting (the session then dies by keep-alive timeout).
	closer := make(chan *smux.Stream, ops)
	go func() {
		for s := range closer {
			s.Close()
		}
	}()
	done := make(chan time.Time, 1)
	go func() {
		for i := 0; i < ops; i++ {
			s, err := server.AcceptStream()
			check("accept stream", err)
			closer <- s
		}
		done <- time.Now()
	}()

	start := time.Now()
	for i := 0; i < ops; i++ {
		s, err := client.OpenStream()
		check("open stream", err)
		check("client close", s.Close())
	}
	end := <-done
	return fmt.Sprintf("ops=%d secs=%.6f", ops, end.Sub(start).Seconds())
}

func pingpong(client, server *smux.Session, iters int) string {
	go func() {
		s, err := server.AcceptStream()
		check("accept stream", err)
		buf := make([]byte, msgSize)
		for {
			if _, err := io.ReadFull(s, buf); err == io.EOF {
				s.Close()
				return
			} else {
				check("server read", err)
			}
			_, err := s.Write(buf)
			check("server write", err)
		}
	}()

	out := bytes.Repeat([]byte{0xa5}, msgSize)
	in := make([]byte, msgSize)
	lat := make([]time.Duration, iters)
	s, err := client.OpenStream()
	check("open stream", err)
	for i := -warmup; i < iters; i++ {
		t := time.Now()
		_, err := s.Write(out)
		check("client write", err)
		_, err = io.ReadFull(s, in)
		check("client read", err)
		if i >= 0 {
			lat[i] = time.Since(t)
		}
	}
	s.Close()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(lat)))) - 1
		if i < 0 {
			i = 0
		}
		return float64(lat[i].Nanoseconds()) / 1e3
	}
	return fmt.Sprintf("p50_us=%.3f p99_us=%.3f", pct(50), pct(99))
}

func idle(client, server *smux.Session, n int) string {
	b := batch
	if n < b {
		b = n
	}
	ours := make([]*smux.Stream, 0, n)
	theirs := make([]*smux.Stream, 0, n)
	stamps := make([]time.Duration, n) // stamps[i]: since start, after open i
	var before, after runtime.MemStats

	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := client.OpenStream()
		check("open stream", err)
		s, err := server.AcceptStream()
		check("accept stream", err)
		ours = append(ours, c)
		theirs = append(theirs, s)
		stamps[i] = time.Since(start)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ours)
	runtime.KeepAlive(theirs)
	runtime.KeepAlive(client)
	runtime.KeepAlive(server)

	first := stamps[b-1]
	last := stamps[n-1]
	if n > b {
		last -= stamps[n-b-1]
	}
	perStream := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	return fmt.Sprintf("mem_per_stream=%.1f first_secs=%.6f last_secs=%.6f",
		perStream, first.Seconds(), last.Seconds())
}

// peakRSS is VmHWM from /proc/self/status, in KiB.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	check("open /proc/self/status", err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "VmHWM:") {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(line[len("VmHWM:"):]), " kB"), 10, 64)
			check("parse VmHWM", err)
			return kib
		}
	}
	check("read /proc/self/status", sc.Err())
	fail("no VmHWM in /proc/self/status")
	return 0
}

func check(what string, err error) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-bench: "+format+"\n", args...)
	os.Exit(1)
}

// sessionsVia connects a client and a server session across the harness's link: the server
// listens on 127.0.0.1:listen, the client dials 127.0.0.1:dial.
func sessionsVia(version, listen, dial, lowat int) (client, server *smux.Session) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", listen))
	check("listen", err)
	return connect(version, ln, fmt.Sprintf("127.0.0.1:%d", dial), lowat)
}

// serve accepts the streams of server until it ends, each handled by handle in a goroutine
// of its own.
func serve(server *smux.Session, handle func(*smux.Stream)) {
	go func() {
		for {
			s, err := server.AcceptStream()
			if err != nil {
				return
			}
			go handle(s)
		}
	}()
}

type sample struct {
	t float64
	n int64
}

// timeToRate: the first instant at which the bytes of the preceding window reached bps.
func timeToRate(samples []sample, window, bps float64) float64 {
	j := 0
	for _, s := range samples {
		for s.t-samples[j].t > window {
			j++
		}
		t0, n0 := samples[j].t, samples[j].n
		if s.t-t0 >= window/2 && float64(s.n-n0)*8/(s.t-t0) >= bps {
			return s.t
		}
	}
	return math.NaN()
}

func wanStream(client, server *smux.Session, total int64, rtt time.Duration, bps float64) string {
	start := time.Now()
	done := make(chan []sample, 1)
	go func() {
		s, err := server.AcceptStream()
		check("accept stream", err)
		buf := make([]byte, chunk)
		var got int64
		var samples []sample
		for {
			n, err := s.Read(buf)
			if n > 0 {
				got += int64(n)
				samples = append(samples, sample{time.Since(start).Seconds(), got})
			}
			if err == io.EOF {
				break
			}
			check("server read", err)
		}
		s.Close()
		done <- samples
	}()
	s, err := client.OpenStream()
	check("open stream", err)
	writeN(s, make([]byte, chunk), total)
	check("client close", s.Close())
	samples := <-done
	secs := time.Since(start).Seconds()
	if len(samples) == 0 || samples[len(samples)-1].n != total {
		fail("wan-stream: the server did not read %d bytes", total)
	}
	window := math.Max(4*rtt.Seconds(), 0.1)
	return fmt.Sprintf("link_fraction=%.6f t80_secs=%.6f secs=%.6f",
		float64(total)*8/secs/bps, timeToRate(samples, window, 0.8*bps), secs)
}

func wanMixed(client, server *smux.Session, length time.Duration) string {
	var bulkBytes atomic.Int64
	serve(server, func(s *smux.Stream) {
		kind := make([]byte, 1)
		if _, err := io.ReadFull(s, kind); err != nil {
			return
		}
		if kind[0] == 'B' {
			buf := make([]byte, chunk)
			for {
				n, err := s.Read(buf)
				bulkBytes.Add(int64(n))
				if err != nil {
					return
				}
			}
		}
		m := make([]byte, msgSize)
		for {
			if _, err := io.ReadFull(s, m); err != nil {
				return
			}
			if _, err := s.Write(m); err != nil {
				return
			}
		}
	})
	var stop atomic.Bool
	for i := 0; i < 8; i++ {
		s, err := client.OpenStream()
		check("open stream", err)
		go func() {
			_, err := s.Write([]byte{'B'})
			check("bulk write", err)
			buf := bytes.Repeat([]byte{0x5a}, chunk)
			for !stop.Load() {
				if _, err := s.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	s, err := client.OpenStream()
	check("open stream", err)
	_, err = s.Write([]byte{'I'})
	check("interactive write", err)
	start := time.Now()
	var lat []time.Duration
	var t0 time.Time
	var n0 int64
	msg, back := bytes.Repeat([]byte{7}, msgSize), make([]byte, msgSize)
	for time.Since(start) < length {
		t := time.Now()
		_, err := s.Write(msg)
		check("request", err)
		_, err = io.ReadFull(s, back)
		check("response", err)
		if time.Since(start) >= time.Second {
			if t0.IsZero() {
				t0, n0 = t, bulkBytes.Load()
			}
			lat = append(lat, time.Since(t))
		}
		time.Sleep(20*time.Millisecond - time.Since(t))
	}
	if len(lat) == 0 {
		fail("wan-mixed: no request after warm-up")
	}
	bulk := float64(bulkBytes.Load()-n0) * 8 / time.Since(t0).Seconds()
	stop.Store(true)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	at := func(q float64) float64 {
		return lat[int(math.Round(float64(len(lat)-1)*q))].Seconds() * 1e3
	}
	return fmt.Sprintf("bulk_mbit=%.6f p50_ms=%.6f p99_ms=%.6f requests=%d", bulk/1e6, at(0.5), at(0.99), len(lat))
}

func wanFetch(client, server *smux.Session, rtt time.Duration) string {
	serve(server, func(s *smux.Stream) {
		size := make([]byte, 8)
		if _, err := io.ReadFull(s, size); err != nil {
			return
		}
		writeN(s, make([]byte, chunk), int64(binary.LittleEndian.Uint64(size)))
		s.Close()
	})
	get := func(size int64) float64 {
		t := time.Now()
		s, err := client.OpenStream()
		check("open stream", err)
		req := make([]byte, 8)
		binary.LittleEndian.PutUint64(req, uint64(size))
		_, err = s.Write(req)
		check("request", err)
		buf := make([]byte, chunk)
		var n int64
		for n < size {
			k, err := s.Read(buf)
			n += int64(k)
			if err != nil && n < size {
				fail("wan-fetch: early end after %d of %d bytes: %v", n, size, err)
			}
		}
		secs := time.Since(t).Seconds()
		s.Close()
		return secs
	}
	cold := get(mib)
	get(16 * mib)
	time.Sleep(time.Second)
	warm := get(mib)
	return fmt.Sprintf("cold_rtts=%.6f warm_rtts=%.6f", cold/rtt.Seconds(), warm/rtt.Seconds())
}
