//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

var _ backend.GraphRecorder = (*Backend)(nil)

// errRecording refuses what cannot be recorded into a graph: a read-back
// or sync (the recorded ops have not run) and host-to-device copies (a
// graph would replay the bytes of the recording, not the caller's).
var errRecording = errors.New("cuda: not allowed while recording a graph (reads, syncs, writes, uploads and binds are not recorded)")

// BeginGraph starts recording the compute stream (stream capture, relaxed
// mode: the backend may still allocate while it records).
func (be *Backend) BeginGraph() error {
	switch {
	case be.closed:
		return errClosed
	case be.recording:
		return errors.New("cuda: BeginGraph while recording a graph")
	case be.prof != nil:
		return errProfiling
	case C.fm_has_graphs() == 0:
		return errors.New("cuda: the driver has no CUDA graph entry points")
	}
	if err := cuErr(C.fm_capture_begin(be.ctx, be.stream), "cuStreamBeginCapture"); err != nil {
		return err
	}
	be.recording = true
	be.graphLayers() // a recording abandoned before left its layers
	return nil
}

// EndGraph ends the recording and instantiates it.
func (be *Backend) EndGraph() (backend.Graph, error) {
	if !be.recording {
		return nil, errors.New("cuda: EndGraph without BeginGraph")
	}
	be.recording = false
	layers := be.graphLayers()
	var exec C.CUgraphExec
	if err := cuErr(C.fm_capture_end(be.ctx, be.stream, &exec), "cuStreamEndCapture/cuGraphInstantiate"); err != nil {
		return nil, err
	}
	return &graph{be: be, exec: exec, epoch: be.epoch, layers: layers}, nil
}

// graph is an instantiated CUDA graph and the scratch epoch it was
// recorded in: its kernels hold the addresses of the backend's scratch
// (DeltaNet's work buffer), which a later growth moves.
type graph struct {
	be    *Backend
	exec  C.CUgraphExec
	epoch uint64
	// layers: the layers whose experts its kernels read (evictlayer.go).
	layers []int
}

func (g *graph) Replay() error {
	be := g.be
	switch {
	case be.closed:
		return errClosed
	case g.exec == nil:
		return errors.New("cuda: replay of a released graph")
	case be.recording:
		return errRecording
	case g.epoch != be.epoch:
		return backend.ErrGraphStale
	}
	if err := cuErr(C.fm_graph_launch(be.ctx, g.exec, be.stream), "cuGraphLaunch"); err != nil {
		return err
	}
	for _, l := range g.layers {
		if err := be.readQueued(l); err != nil {
			return err
		}
	}
	return be.mark('c', "graph", 0)
}

func (g *graph) Release() error {
	if g.exec == nil || g.be.closed {
		g.exec = nil
		return nil
	}
	err := cuErr(C.fm_graph_destroy(g.be.ctx, g.exec), "cuGraphExecDestroy")
	g.exec = nil
	return err
}
