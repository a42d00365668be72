//! HTML building blocks of the atlas: escaping, the page frame, the shared style sheet and the index
//! page's sort/filter script. No external resources: the site opens from disk.

use std::fmt::Write;

/// Escape `s` for HTML text and attribute values (`& < > " '`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number with `digits` decimals, `–` when not finite.
pub fn num(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "–".into()
    }
}

/// A q- or p-value: 3 significant digits in scientific notation below 0.001.
pub fn pval(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else {
        format!("{x:.3}")
    }
}

/// A whole page: `title` (escaped here), the style sheet at `css` (a relative link), and `body`
/// (already HTML).
pub fn page(title: &str, css: &str, class: &str, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 512);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"{}\">\n</head>\n<body class=\"{}\">\n{body}</body>\n</html>\n",
        escape(title),
        escape(css),
        escape(class)
    );
    s
}

/// The shared style sheet (`style.css`).
pub const STYLE: &str = r#"body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; font-size: 14px; }
h1 { font-size: 1.5em; margin: 0.3em 0; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.4em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
nav { margin-bottom: 0.8em; }
nav a { margin-right: 1.2em; }
a { color: #1f5fa8; }
table { border-collapse: collapse; margin: 0.4em 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#features th { cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; }
#features th.asc::after { content: " \25B2"; }
#features th.desc::after { content: " \25BC"; }
#features td.genes { max-width: 20em; }
td.set { max-width: 22em; overflow-wrap: anywhere; }
td.overlap { max-width: 16em; }
body.index { max-width: 1500px; }
.muted { color: #888; }
.meta { color: #555; margin: 0.2em 0; }
.cols { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
.cols > div { min-width: 18em; }
.dead { color: #999; }
#filter { font-size: 1em; padding: 3px 6px; width: 24em; margin-right: 1em; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
"#;

/// The index page's script: sort by a column header (click, or `#sort=KEY&dir=asc|desc` in the
/// URL), filter rows by the text box (or `&q=TEXT`); the count of shown rows goes into `#count`
/// and the applied sort into the table's `data-sorted` attribute.
pub const INDEX_JS: &str = r#"(function () {
  var table = document.getElementById('features');
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = table.tHead.rows[0].cells;
  var box = document.getElementById('filter');
  var count = document.getElementById('count');
  function params() {
    var p = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var i = kv.indexOf('=');
      if (i > 0) { p[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); }
    });
    return p;
  }
  function value(row, i, numeric) {
    var c = row.cells[i];
    var v = c.hasAttribute('data-v') ? c.getAttribute('data-v') : c.textContent;
    if (!numeric) { return v.toLowerCase(); }
    var x = parseFloat(v);
    return isNaN(x) ? null : x;
  }
  function apply() {
    var p = params();
    var key = p.sort || 'index';
    var dir = p.dir === 'desc' ? 'desc' : 'asc';
    var col = -1;
    for (var i = 0; i < heads.length; i++) {
      heads[i].classList.remove('asc', 'desc');
      if (heads[i].getAttribute('data-key') === key) { col = i; }
    }
    if (col < 0) { col = 0; key = heads[0].getAttribute('data-key'); }
    var numeric = heads[col].getAttribute('data-type') === 'num';
    var sign = dir === 'desc' ? -1 : 1;
    var sorted = rows.slice().sort(function (a, b) {
      var x = value(a, col, numeric), y = value(b, col, numeric);
      var r;
      if (x === y) { r = 0; }
      else if (x === null || x === '') { return 1; }
      else if (y === null || y === '') { return -1; }
      else { r = x < y ? -1 : 1; }
      return sign * r || (+a.getAttribute('data-i') - +b.getAttribute('data-i'));
    });
    heads[col].classList.add(dir);
    var q = (p.q || '').toLowerCase();
    if (box.value.toLowerCase() !== q) { box.value = p.q || ''; }
    var shown = 0;
    while (body.firstChild) { body.removeChild(body.firstChild); }
    sorted.forEach(function (row) {
      var hit = !q || row.textContent.toLowerCase().indexOf(q) >= 0;
      row.style.display = hit ? '' : 'none';
      if (hit) { shown++; }
      body.appendChild(row);
    });
    table.setAttribute('data-sorted', key + ':' + dir);
    count.textContent = shown + ' of ' + rows.length + ' features shown';
  }
  function go(p) {
    var parts = [];
    ['sort', 'dir', 'q'].forEach(function (k) {
      if (p[k]) { parts.push(k + '=' + encodeURIComponent(p[k])); }
    });
    var h = '#' + parts.join('&');
    try { history.replaceState(null, '', h); } catch (e) { location.hash = h; }
    apply();
  }
  Array.prototype.forEach.call(heads, function (th) {
    th.addEventListener('click', function () {
      var p = params();
      var key = th.getAttribute('data-key');
      var first = th.getAttribute('data-type') === 'num' ? 'desc' : 'asc';
      p.dir = (p.sort || 'index') === key ? (p.dir === 'desc' ? 'asc' : 'desc') : first;
      p.sort = key;
      go(p);
    });
  });
  box.addEventListener('input', function () {
    var p = params();
    p.q = box.value;
    go(p);
  });
  window.addEventListener('hashchange', apply);
  apply();
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("CD8A"), "CD8A");
        let p = page("<script>", "../style.css", "feature", "<p>x</p>\n");
        assert!(p.contains("<title>&lt;script&gt;</title>"), "{p}");
        assert!(!p.contains("<script>"), "{p}");
    }

    #[test]
    fn numbers_are_formatted_for_tables() {
        assert_eq!(num(0.12345, 3), "0.123");
        assert_eq!(num(f64::NAN, 3), "–");
        assert_eq!(pval(1.5e-12), "1.50e-12");
        assert_eq!(pval(0.0123), "0.012");
        assert_eq!(pval(0.0), "0.000");
    }
}
