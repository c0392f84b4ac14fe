# The parsers and the arithmetic of scripts/peer-bench.sh, apart so that cmd/fmoe-run's
# TestPeerParse runs them on a real fmoe-run report: a change of --timing's layout (or of the
# "generated in" line) then fails in CI, not in a device call. Sourced; defines functions only.

# timed_split FILE: fmoe-run --timing's report -> "decode_tps layer_ms fixed_ms prefill_tps
# prefill_layer_ms prefill_fixed_ms" (ms a token; fixed = total - layers)
timed_split() {
  awk '/\[timing\] prefill:/{for(i=1;i<=NF;i++) if($i=="tok/s") p=$(i-1)}
    /\[timing\] decode:/{for(i=1;i<=NF;i++) if($i=="tok/s") d=$(i-1)}
    {k=$1; for(i=2;i<=NF && $i !~ /^[-0-9.]+%?$/;i++) k=k" "$i; u=$i; v=$(i+1)}
    k=="layer_total"{lt=v; plt=u} k=="layers"{ly=v; ply=u} k=="total"{tt=v; ptt=u}
    END{printf "%s %s %.3f %s %s %.3f\n", d, lt, tt-ly, p, plt, ptt-ply}' "$1"
}
# untimed_rate FILE: the decode rate without sampling ("forward alone") of fmoe-run's last
# "generated in" line, or nothing
untimed_rate() { sed -n 's/.* generated in .*forward alone \([0-9.]*\) tok\/s).*/\1/p' "$1" | tail -1; }
# untimed_median FILE: the same line's median decode step as a rate (1000 / median ms, tok/s), or
# nothing: one slow step (a page fault, a collector pause) moves the sum, not the median
untimed_median() {
  sed -n 's/.* generated in .*median step \([0-9.]*\) ms;.*/\1/p' "$1" | tail -1 |
    awk '$1 > 0 {printf "%.2f\n", 1000 / $1}'
}

# median N...: the median of the numbers given (nothing for none; the lower middle of an even count)
median() { [ $# -eq 0 ] || printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# fmoe's GatedDeltaNet layer and fixed cost (ms) from the rates of its 1-layer pack and an N-layer
# stack of the same layer (N default 2): layer = (tN - t1) / (N - 1), fixed = t1 - layer (N = 2:
# llama.cpp's split of its stacks, 2 t1 - t2). A layer that costs nothing or less is noise (more
# layers measured faster): "noise" then, which extrap and ratio pass on rather than a negative or
# infinite rate (session 20's -77.6 tok/s)
fsplit() { awk -v a="$1" -v b="$2" -v n="${3:-2}" 'BEGIN{ if(a=="-"||b=="-"||a==0||b==0||n<2){print "- -"; exit}
  t1=1000/a; tn=1000/b; l=(tn-t1)/(n-1); if (l <= 0) print "noise noise"; else printf "%.3f %.3f\n", l, t1-l }'; }
num() { [[ $1 =~ ^-?[0-9.]+$ ]]; }
ratio() { num "$1" && num "$2" || { echo -; return; }; awk -v a="$1" -v b="$2" 'BEGIN{ if(b==0) print "-"; else printf "%.2fx", a/b }'; }
# extrap LAYER_MS FIXED_MS: tok/s at 60 layers
extrap() { num "$1" && num "$2" || { [ "$1" = noise ] && echo noise || echo -; return; }; awk -v l="$1" -v f="$2" 'BEGIN{ printf "%.2f", 1000/(60*l+f) }'; }
# onelayer FMOE_1L_TPS LLAMA_LA_TPS LLAMA_ATT_MS: fmoe / llama.cpp at one GatedDeltaNet layer, with no
# split of fmoe's layer: fmoe's 1-layer token against llama.cpp's LA less its attention layer (each
# engine's one layer plus its fixed cost). For the resident row, where fmoe's layer (~0.1 ms) is
# smaller than its runs' spread and the stacks' split can be noise
onelayer() { num "$1" && num "$2" && num "$3" || { echo -; return; }
  awk -v f="$1" -v a="$2" -v t="$3" 'BEGIN{ if (f<=0||a<=0||1000/a-t<=0) print "-"; else printf "%.2fx", (1000/a-t)/(1000/f) }'; }
# llama.cpp's GatedDeltaNet layer, attention layer and fixed cost (ms) from the LA, LLA, LAA rates
lsplit() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN{ if(a=="-"||b=="-"||c=="-"){print "- - -"; exit}
  ta=1000/a; tb=1000/b; tc=1000/c; if (tb-ta <= 0 || tc-ta <= 0) { print "noise noise noise"; exit }
  printf "%.3f %.3f %.3f\n", tb-ta, tc-ta, 3*ta-tb-tc }'; }
