package fsguard

import (
	"fmt"
	"io"
	"os"
)

// OpenRegular opens path for reading and refuses anything but a regular file. The open itself
// never waits: a named pipe would otherwise block it until a writer appears (forever, and out
// of reach of Ctrl-C), and a device or socket is no checkpoint file either.
func OpenRegular(path string) (*os.File, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is %s, not a regular file: fmoe reads models only from regular files", path, kind(st.Mode()))
	}
	return f, nil
}

// ReadRegular reads a whole regular file (see OpenRegular).
func ReadRegular(path string) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// RequireRegular fails unless path is a regular file, without reading it: for files a library
// opens itself.
func RequireRegular(path string) error {
	f, err := OpenRegular(path)
	if err != nil {
		return err
	}
	return f.Close()
}

func kind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m.IsDir():
		return "a directory"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "of type " + m.Type().String()
}
