// A small Markdown renderer for untrusted model output. It builds DOM nodes
// and sets only textContent and a checked href: no model text is ever parsed
// as HTML, so "<script>" or "<img onerror=…>" in a reply shows as text.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// safeURL returns an absolute http(s) or mailto URL, or null.
function safeURL(s) {
  try {
    const u = new URL(s, location.href);
    return ["http:", "https:", "mailto:"].includes(u.protocol) ? u.href : null;
  } catch { return null; }
}

// Inline spans: `code`, **strong**, *em* / _em_, ~~del~~, [text](url).
const inlineRe = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*\n]+)\*\*|(?<![\w])__([^_\n]+)__(?![\w])|\*([^*\s][^*\n]*?)\*|(?<![\w])_([^_\s][^_\n]*?)_(?![\w])|~~([^~\n]+)~~|\[([^\]\n]+)\]\(([^)\s]+)\)/g;

function inline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(inlineRe)) {
    if (m.index > last) lines(parent, text.slice(last, m.index));
    if (m[1]) parent.append(el("code", "", m[2]));
    else if (m[3] || m[4]) inline(parent.appendChild(el("strong")), m[3] || m[4]);
    else if (m[5] || m[6]) inline(parent.appendChild(el("em")), m[5] || m[6]);
    else if (m[7]) inline(parent.appendChild(el("del")), m[7]);
    else {
      const href = safeURL(m[9]);
      if (href) {
        const a = el("a", "", m[8]);
        a.href = href;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        parent.append(a);
      } else {
        parent.append(m[0]); // a link we will not follow stays text
      }
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) lines(parent, text.slice(last));
}

// lines appends text, keeping its single line breaks (chat replies rely on
// them) as <br>.
function lines(parent, text) {
  text.split("\n").forEach((t, i) => {
    if (i) parent.append(el("br"));
    if (t) parent.append(t);
  });
}

const fenceRe = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const headRe = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const ruleRe = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const itemRe = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const quoteRe = /^ {0,3}>\s?(.*)$/;
const tableSepRe = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

// render replaces target's children with the Markdown text as DOM. It
// accepts text cut anywhere (a reply still streaming): an unclosed code
// fence renders as code so far.
export function render(target, text) {
  const frag = document.createDocumentFragment();
  blocks(frag, text.replace(/\r\n?/g, "\n").split("\n"));
  target.replaceChildren(frag);
}

function blocks(parent, ls) {
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) inline(parent.appendChild(el("p")), para.join("\n"));
    para = [];
  };
  while (i < ls.length) {
    const line = ls[i];
    let m;
    if ((m = fenceRe.exec(line))) {
      flush();
      const fence = m[1];
      const body = [];
      for (i++; i < ls.length && !ls[i].trim().startsWith(fence); i++) body.push(ls[i]);
      i++;
      const pre = el("pre");
      if (m[2]) pre.append(el("span", "lang", m[2]));
      pre.append(el("code", m[2] ? "language-" + m[2].replace(/[^\w-]/g, "") : "", body.join("\n")));
      parent.append(pre);
      continue;
    }
    if (!line.trim()) { flush(); i++; continue; }
    if ((m = headRe.exec(line))) {
      flush();
      inline(parent.appendChild(el("h" + Math.min(m[1].length + 1, 6))), m[2]);
      i++;
      continue;
    }
    if (ruleRe.test(line)) { flush(); parent.append(el("hr")); i++; continue; }
    if (quoteRe.test(line)) {
      flush();
      const body = [];
      for (; i < ls.length && (m = quoteRe.exec(ls[i])); i++) body.push(m[1]);
      blocks(parent.appendChild(el("blockquote")), body);
      continue;
    }
    if (line.includes("|") && i + 1 < ls.length && tableSepRe.test(ls[i + 1]) && cells(line).length === cells(ls[i + 1]).length) {
      flush();
      const table = el("table");
      const tr = table.appendChild(el("thead")).appendChild(el("tr"));
      for (const c of cells(line)) inline(tr.appendChild(el("th")), c);
      const tb = table.appendChild(el("tbody"));
      for (i += 2; i < ls.length && ls[i].includes("|") && ls[i].trim(); i++) {
        const r = tb.appendChild(el("tr"));
        for (const c of cells(ls[i])) inline(r.appendChild(el("td")), c);
      }
      parent.append(table);
      continue;
    }
    if ((m = itemRe.exec(line)) && (para.length === 0 || m[1] === "")) {
      flush();
      const ordered = /\d/.test(m[2]);
      const list = el(ordered ? "ol" : "ul");
      if (ordered && parseInt(m[2], 10) !== 1) list.start = parseInt(m[2], 10);
      let li = null;
      for (; i < ls.length; i++) {
        const mm = itemRe.exec(ls[i]);
        if (mm && /\d/.test(mm[2]) === ordered) {
          li = list.appendChild(el("li"));
          inline(li, mm[3]);
        } else if (li && ls[i].trim() && /^\s+/.test(ls[i])) {
          li.append(el("br"));
          inline(li, ls[i].trim()); // a continuation line
        } else break;
      }
      parent.append(list);
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
}
