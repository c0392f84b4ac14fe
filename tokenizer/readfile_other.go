//go:build !linux && !darwin

package tokenizer

import "os"

func readFile(path string) (data []byte, release func(), err error) {
	data, err = os.ReadFile(path)
	return data, func() {}, err
}
