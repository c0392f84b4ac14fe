package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultEndpoint is the Hub itself.
const DefaultEndpoint = "https://huggingface.co"

// Settings are what a user configures through huggingface_hub's environment variables.
type Settings struct {
	Endpoint    string // HF_ENDPOINT, no trailing '/'
	Token       string
	TokenSource string // where Token came from, for messages: "HF_TOKEN" or the file's path
	Offline     bool   // HF_HUB_OFFLINE: cache only, no network
	CacheDir    string // HF_HUB_CACHE, or $HF_HOME/hub
}

// SettingsFromEnv reads the settings the way huggingface_hub does: HF_ENDPOINT;
// HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else the file HF_TOKEN_PATH or
// $HF_HOME/token that `hf auth login` writes; HF_HUB_OFFLINE; HF_HUB_CACHE, else
// $HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface.
func SettingsFromEnv() (Settings, error) {
	s := Settings{Endpoint: strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/")}
	if s.Endpoint == "" {
		s.Endpoint = DefaultEndpoint
	}
	if !strings.HasPrefix(s.Endpoint, "http://") && !strings.HasPrefix(s.Endpoint, "https://") {
		return s, fmt.Errorf("HF_ENDPOINT=%q: want an http:// or https:// URL", s.Endpoint)
	}
	home, err := hfHome()
	if err != nil {
		return s, err
	}
	s.CacheDir = firstEnv("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
	if s.CacheDir == "" {
		s.CacheDir = filepath.Join(home, "hub")
	}
	s.CacheDir = expandHome(s.CacheDir)
	s.Offline = truthy(os.Getenv("HF_HUB_OFFLINE"))
	for _, name := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if t := strings.TrimSpace(os.Getenv(name)); t != "" {
			s.Token, s.TokenSource = t, name
			return s, nil
		}
	}
	path := expandHome(os.Getenv("HF_TOKEN_PATH"))
	if path == "" {
		path = filepath.Join(home, "token")
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		s.Token, s.TokenSource = strings.TrimSpace(string(data)), path
	case !errors.Is(err, os.ErrNotExist):
		return s, fmt.Errorf("reading the Hugging Face token file: %w", err)
	}
	return s, nil
}

func hfHome() (string, error) {
	if h := os.Getenv("HF_HOME"); h != "" {
		return expandHome(h), nil
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "huggingface"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the Hugging Face cache (set HF_HOME or HF_HUB_CACHE): %w", err)
	}
	return filepath.Join(home, ".cache", "huggingface"), nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// truthy is huggingface_hub's reading of boolean variables.
func truthy(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}
