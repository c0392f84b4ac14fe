package main

import "github.com/urfave/cli/v2"

func synthCmd() *cli.Command {
	return &cli.Command{Name: "synth", Hidden: true}
}
