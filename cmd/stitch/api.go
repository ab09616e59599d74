package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/httpapi"
	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/pipeline"
)

// newAPI wires the pane's API (docs/API.md) to a pipeline: its view, the
// configured tokens, and a client that records analysts' changes and
// decisions on the pipeline's brokers. close releases the client.
func newAPI(cfg appconfig.Config, p *pipeline.Pipeline, log *slog.Logger) (api *httpapi.API, close func(), err error) {
	tokens, err := auth.NewTokens(cfg.Auth.Tokens, cfg.Auth.DeviceGroups)
	if err != nil {
		return nil, nil, err
	}
	kc := cfg.Kafka.ClientConfig
	kc.Brokers = p.Brokers()
	cl, err := kc.NewClient(kgo.ClientID(cfg.Kafka.ClientID + "-api"))
	if err != nil {
		return nil, nil, fmt.Errorf("api client: %w", err)
	}
	record := func(ctx context.Context, topic, key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr()
	}
	return &httpapi.API{View: p.View(), Tokens: tokens, Record: record, Approvals: cfg.Respond.Approvals,
		Updates: pipeline.UpdatesTopic(cfg.Config), HuntingDir: cfg.HuntingDir(), Log: log}, cl.Close, nil
}

// announceAPI says where the pane and the API are and who may use them.
func announceAPI(addr string, tokens int) {
	fmt.Fprintf(os.Stderr, "stitch: the pane (incidents, actions, hunting) on http://%s/\n", addr)
	if tokens == 0 {
		fmt.Fprintf(os.Stderr, "stitch: API on http://%s/api/ (no auth.tokens: it answers only loopback requests, as admin; 'stitch token create' makes tokens)\n", addr)
		return
	}
	fmt.Fprintf(os.Stderr, "stitch: API on http://%s/api/ (%s)\n", addr, english.Count(tokens, "token"))
}
