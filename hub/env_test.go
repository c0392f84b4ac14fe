package hub

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSettingsFromEnv(t *testing.T) {
	home := t.TempDir()
	for _, v := range []string{"HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"} {
		t.Setenv(v, "")
	}
	t.Setenv("HF_HOME", home)
	s, err := SettingsFromEnv()
	if err != nil || s.Endpoint != DefaultEndpoint || s.CacheDir != filepath.Join(home, "hub") || s.Token != "" || s.Offline {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
	os.WriteFile(filepath.Join(home, "token"), []byte(" hf_fromfile\n"), 0o600)
	t.Setenv("HF_ENDPOINT", "https://mirror.example/")
	t.Setenv("HF_HUB_OFFLINE", "yes")
	t.Setenv("HF_HUB_CACHE", "/cache")
	s, _ = SettingsFromEnv()
	if s.Endpoint != "https://mirror.example" || !s.Offline || s.CacheDir != "/cache" || s.Token != "hf_fromfile" || s.TokenSource != filepath.Join(home, "token") {
		t.Errorf("from env and token file: %+v", s)
	}
	t.Setenv("HF_TOKEN", "hf_env")
	if s, _ = SettingsFromEnv(); s.Token != "hf_env" || s.TokenSource != "HF_TOKEN" {
		t.Errorf("HF_TOKEN wins over the file: %+v", s)
	}
	t.Setenv("HF_ENDPOINT", "mirror.example")
	if _, err := SettingsFromEnv(); err == nil {
		t.Error("an endpoint without a scheme was accepted")
	}
}
