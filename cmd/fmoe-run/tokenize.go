package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/tokenizer"
)

func tokenizeCmd() *cli.Command {
	return &cli.Command{
		Name:      "tokenize",
		Usage:     "print the token ids of a text as JSON (or decode ids with --decode)",
		UsageText: "fmoe-run tokenize --model DIR [--text TEXT | < file]\n   fmoe-run tokenize --model DIR --decode [--text \"1,2,3\" | < ids]",
		Description: `Uses the model's own tokenizer.json, or Kimi-K2's tiktoken.model with its tokenizer_config.json
(copied into the packed directory by fmoe-pack; a checkpoint directory works too). Special tokens written in the text (<|im_start|>, <tool_call>, ...) are
recognised, as Hugging Face tokenizers does. Without --text the text is read from standard input.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "packed model (or checkpoint) `DIR` holding tokenizer.json (or tiktoken.model)", Required: true},
			&cli.StringFlag{Name: "text", Usage: "the `TEXT` to encode (or the ids to decode); default: standard input"},
			&cli.BoolFlag{Name: "decode", Usage: "decode ids (JSON list or comma/space separated) to text"},
		},
		Action: func(c *cli.Context) error {
			tok, err := tokenizer.LoadDir(c.String("model"))
			if err != nil {
				return err
			}
			text := c.String("text")
			if !c.IsSet("text") {
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				text = string(b)
			}
			if c.Bool("decode") {
				ids, err := parseIDs(text, tok.VocabSize())
				if err != nil {
					return cliutil.UsageError("--decode: %v", err)
				}
				fmt.Print(tok.Decode(ids))
				return nil
			}
			out, _ := json.Marshal(tok.Encode(text))
			fmt.Println(string(out))
			return nil
		},
	}
}

// parseIDs reads ids written as a JSON list or separated by commas and spaces.
func parseIDs(s string, vocab int) ([]int, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '[' || r == ']' })
	ids := make([]int, 0, len(fields))
	for _, f := range fields {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a token id", f)
		}
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("token id %d is outside the vocabulary (0..%d)", id, vocab-1)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
