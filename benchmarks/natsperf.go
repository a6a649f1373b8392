// natsperf: a JetStream load generator in Go with nats.go (the official client), built on first
// use by benchmarks/peers/nats.py from Debian's golang-go and golang-github-nats-io-go-nats-dev
// (GOPATH mode, no module download). Prints one JSON object like benchmarks/pyclient.py.
//
//	natsperf create  -url URL -stream S
//	natsperf produce -url URL -stream S -n N -s SIZE   (PublishAsync, every message acknowledged)
//	natsperf consume -url URL -stream S -n N           (pull consumer, AckNone, DeliverAll)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

func out(v map[string]interface{}) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: natsperf create|produce|consume ...")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	url := fs.String("url", nats.DefaultURL, "server")
	stream := fs.String("stream", "bench", "stream (and subject)")
	n := fs.Int("n", 100000, "records")
	size := fs.Int("s", 100, "record size")
	deadline := fs.Duration("d", 120*time.Second, "deadline")
	fs.Parse(os.Args[2:])
	nc, err := nats.Connect(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch mode {
	case "create":
		_, err = js.AddStream(&nats.StreamConfig{Name: *stream, Subjects: []string{*stream}, Storage: nats.FileStorage})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out(map[string]interface{}{"records": 0, "seconds": 0})
	case "produce":
		payload := make([]byte, *size)
		t0 := time.Now()
		futures := make([]nats.PubAckFuture, 0, *n)
		for i := 0; i < *n && time.Since(t0) < *deadline; i++ {
			f, err := js.PublishAsync(*stream, payload)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			futures = append(futures, f)
		}
		timedOut := 0
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(*deadline):
			timedOut = 1
		}
		elapsed := time.Since(t0).Seconds()
		failed := 0
		for _, f := range futures {
			select {
			case <-f.Ok():
			default:
				failed++
			}
		}
		errText := ""
		if failed > 0 {
			errText = fmt.Sprintf("%d not acknowledged", failed)
		}
		out(map[string]interface{}{"records": len(futures) - failed, "seconds": elapsed, "timed_out": timedOut, "error": errText})
	case "consume":
		sub, err := js.PullSubscribe(*stream, "", nats.AckNone(), nats.DeliverAll())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		t0 := time.Now()
		got, nbytes := 0, 0
		for got < *n && time.Since(t0) < *deadline {
			msgs, err := sub.Fetch(1000, nats.MaxWait(2*time.Second))
			if err != nil && err != nats.ErrTimeout {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			for _, m := range msgs {
				nbytes += len(m.Data)
			}
			got += len(msgs)
		}
		timedOut := 0
		if got < *n {
			timedOut = 1
		}
		out(map[string]interface{}{"records": got, "bytes": nbytes, "seconds": time.Since(t0).Seconds(), "timed_out": timedOut})
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}
