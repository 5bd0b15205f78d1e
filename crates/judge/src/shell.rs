//! Shell commands, understood rather than grepped.
//!
//! Owns: [`ShellFlag`], [`ShellFlags`] and [`read_command`], which reads a
//! command line (the value of an argument whose role is `command`) as the
//! shell would: lists (`;`, `&&`, `||`, `&`, newlines) of pipelines of
//! simple commands with redirections, command substitutions (`$(…)`,
//! backticks, `<(…)`) read recursively, `sh -c`/`eval` scripts read
//! recursively, and each word unquoted by the `shell-words` crate (POSIX
//! quoting rules). [`read_file_write`] reads what a file-writing tool does
//! (its `path` and `body` arguments).
//!
//! Facts: credential reads (the environment dump, secret variables, key and
//! credential files), network egress with its hosts, credentials leaving
//! through it, download-and-run, persistence (shell profiles, git hooks,
//! crontab, CI files, services) and dependency manifests changed, package
//! installs from URLs and pushes to new remotes. A test run, a build or a
//! formatter gives no fact.

use std::fmt;

/// One thing a command does that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellFlag {
    /// Reads credentials: `env`, `printenv`, `$AWS_SECRET_*`, `~/.aws`,
    /// `.env`, private keys.
    CredentialRead,
    /// Reaches the network (`curl`, `wget`, `nc`, `ssh`, interpreter
    /// sockets, `/dev/tcp`).
    Network,
    /// Credentials read in the command leave through the network.
    CredentialOut,
    /// Downloaded code is run (`curl … | sh`, `bash <(curl …)`, download
    /// then execute).
    DownloadRun,
    /// Writes a place that runs code later: shell profiles, `.git/hooks`,
    /// crontab, CI files, services, `authorized_keys`.
    Persistence,
    /// Changes a dependency manifest (`requirements.txt`, `setup.py`,
    /// `package.json`, ...).
    Dependency,
    /// Installs packages from a URL, a git repository or another index.
    InstallFromUrl,
    /// Pushes to a remote named by URL or adds a remote.
    PushRemote,
}

impl ShellFlag {
    /// All flags.
    pub const ALL: [ShellFlag; 8] = [
        ShellFlag::CredentialRead,
        ShellFlag::Network,
        ShellFlag::CredentialOut,
        ShellFlag::DownloadRun,
        ShellFlag::Persistence,
        ShellFlag::Dependency,
        ShellFlag::InstallFromUrl,
        ShellFlag::PushRemote,
    ];

    /// The name used in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            ShellFlag::CredentialRead => "credential_read",
            ShellFlag::Network => "network",
            ShellFlag::CredentialOut => "credential_out",
            ShellFlag::DownloadRun => "download_run",
            ShellFlag::Persistence => "persistence",
            ShellFlag::Dependency => "dependency",
            ShellFlag::InstallFromUrl => "install_from_url",
            ShellFlag::PushRemote => "push_remote",
        }
    }

    /// Parses a flag name.
    pub fn parse(s: &str) -> Option<ShellFlag> {
        ShellFlag::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`ShellFlag`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShellFlags(u16);

impl ShellFlags {
    /// Adds a flag.
    pub fn insert(&mut self, f: ShellFlag) {
        self.0 |= f.bit();
    }

    /// True if the flag is set.
    pub fn contains(self, f: ShellFlag) -> bool {
        self.0 & f.bit() != 0
    }

    /// True if the sets share a flag.
    pub fn intersects(self, o: ShellFlags) -> bool {
        self.0 & o.0 != 0
    }

    /// True if no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ShellFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for x in ShellFlag::ALL.into_iter().filter(|x| self.contains(*x)) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(x.as_str())?;
        }
        Ok(())
    }
}

/// What a command (or a file write) does: its flags, the hosts it reaches
/// and the first piece of evidence per flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellReading {
    /// The flags.
    pub flags: ShellFlags,
    /// Hosts the command reaches (at most 8).
    pub hosts: Vec<String>,
    /// Evidence, one line per flag, e.g. `credential_read: ~/.aws/credentials`.
    pub evidence: Vec<(ShellFlag, String)>,
}

impl ShellReading {
    fn note(&mut self, f: ShellFlag, what: impl Into<String>) {
        if !self.flags.contains(f) {
            self.flags.insert(f);
            let mut w: String = what.into();
            if w.len() > 80 {
                let mut cut = 80;
                while !w.is_char_boundary(cut) {
                    cut -= 1;
                }
                w.truncate(cut);
                w.push('…');
            }
            self.evidence.push((f, w));
        }
    }

    fn host(&mut self, h: &str) {
        let h = h
            .trim_matches(|c: char| c == '[' || c == ']')
            .to_ascii_lowercase();
        if !h.is_empty() && self.hosts.len() < 8 && !self.hosts.contains(&h) {
            self.hosts.push(h);
        }
    }

    /// Adds another reading (a second command argument, a file write).
    pub fn merge(&mut self, other: ShellReading) {
        for (f, w) in other.evidence {
            self.note(f, w);
        }
        for h in &other.hosts {
            self.host(h);
        }
    }

    /// A short human sentence of the evidence.
    pub fn summary(&self) -> String {
        self.evidence
            .iter()
            .map(|(f, w)| format!("{}: {w}", f.as_str()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// How deep `sh -c`, `eval` and substitutions are followed.
const MAX_DEPTH: usize = 4;
/// Longest command read (longer ones are read up to here).
const MAX_LEN: usize = 64 * 1024;

/// Reads a command line. `intent` (lower-cased) exempts persistence and
/// dependency writes whose file the user named.
pub fn read_command(cmd: &str, intent: Option<&str>) -> ShellReading {
    let mut r = ShellReading::default();
    let cmd = match cmd.char_indices().nth(MAX_LEN) {
        Some((i, _)) => &cmd[..i],
        None => cmd,
    };
    Ctx::new(&mut r, intent).script(cmd, 0);
    if r.flags.contains(ShellFlag::CredentialRead)
        && r.flags.contains(ShellFlag::Network)
        && !r.flags.contains(ShellFlag::CredentialOut)
    {
        // A credential read and egress in one command line: a file or a
        // variable in between still carries it.
        r.note(
            ShellFlag::CredentialOut,
            "credentials read and sent in one command line",
        );
    }
    r
}

/// Reads a file write: `path` written with `body`.
pub fn read_file_write(path: &str, body: &str, intent: Option<&str>) -> ShellReading {
    let mut r = ShellReading::default();
    Ctx::new(&mut r, intent).written(path);
    if r.flags.contains(ShellFlag::Dependency)
        && (body.contains("://") || body.contains("git+") || body.contains("--index-url"))
    {
        r.note(
            ShellFlag::InstallFromUrl,
            format!("`{path}` names a package URL"),
        );
    }
    r
}

/// One simple command: its text (redirections taken out), redirection
/// targets, and substitutions found in it.
#[derive(Debug, Default)]
struct Simple {
    text: String,
    redirects: Vec<(bool, String)>,
    substitutions: Vec<String>,
}

/// Pipelines of one list: each pipeline is its simple commands.
type Pipelines = Vec<Vec<Simple>>;

/// Splits a script into pipelines of simple commands, respecting quotes.
/// Substitutions are cut out whole (nesting counted) and kept.
fn split(s: &str) -> Pipelines {
    let b = s.as_bytes();
    let mut lists: Pipelines = vec![Vec::new()];
    let mut cur = Simple::default();
    let mut i = 0;
    let (mut sq, mut dq) = (false, false);
    // Pending redirection: the next word is its target.
    let mut redirect: Option<(bool, String)> = None;
    let flush_word = |cur: &mut Simple, redirect: &mut Option<(bool, String)>| {
        if let Some((append, t)) = redirect.take() {
            if t.is_empty() {
                *redirect = Some((append, t));
            } else {
                cur.redirects.push((append, t));
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        if sq {
            if c == b'\'' {
                sq = false;
            }
            push(&mut cur, &mut redirect, s, i, i + 1);
            i += 1;
            continue;
        }
        if c == b'\\' && i + 1 < b.len() {
            let end = next_char_end(s, i + 1);
            push(&mut cur, &mut redirect, s, i, end);
            i = end;
            continue;
        }
        if c == b'"' {
            dq = !dq;
            push(&mut cur, &mut redirect, s, i, i + 1);
            i += 1;
            continue;
        }
        if c == b'\'' && !dq {
            sq = true;
            push(&mut cur, &mut redirect, s, i, i + 1);
            i += 1;
            continue;
        }
        // Substitutions: `$(`, `<(`, `>(` and backticks, in or out of
        // double quotes.
        let opens = (c == b'$' || (!dq && (c == b'<' || c == b'>')))
            && b.get(i + 1) == Some(&b'(')
            && !(c == b'$' && b.get(i + 2) == Some(&b'('));
        if opens || c == b'`' {
            let (inner, end) = if c == b'`' {
                let end = s[i + 1..].find('`').map_or(b.len(), |j| i + 1 + j);
                (&s[i + 1..end], (end + 1).min(b.len()))
            } else {
                let end = matching_paren(b, i + 1);
                (&s[i + 2..end.min(b.len())], (end + 1).min(b.len()))
            };
            cur.substitutions.push(inner.to_owned());
            // The word keeps a placeholder so `sh -c "$(…)"` is still seen.
            push_str(&mut cur, &mut redirect, "__SUBST__");
            i = end;
            continue;
        }
        if dq {
            push(&mut cur, &mut redirect, s, i, next_char_end(s, i));
            i = next_char_end(s, i);
            continue;
        }
        match c {
            b'|' | b';' | b'&' | b'\n' => {
                let pipe = c == b'|' && b.get(i + 1) != Some(&b'|');
                let and = c == b'&' && b.get(i + 1) == Some(&b'>');
                if and {
                    // `&>file`: both streams to a file.
                    redirect = Some((false, String::new()));
                    i += 2;
                    continue;
                }
                flush_word(&mut cur, &mut redirect);
                let done = std::mem::take(&mut cur);
                if let Some(p) = lists.last_mut() {
                    p.push(done);
                }
                if !pipe {
                    lists.push(Vec::new());
                }
                // `||`, `&&`, `;;` and `|&` are two bytes.
                let doubled = matches!(b.get(i + 1), Some(&n) if n == c && c != b'\n')
                    || (c == b'|' && b.get(i + 1) == Some(&b'&'));
                i += if doubled { 2 } else { 1 };
            }
            b'>' | b'<' => {
                flush_word(&mut cur, &mut redirect);
                // Drop a file-descriptor number just written (`2>`).
                while cur.text.ends_with(|ch: char| ch.is_ascii_digit()) {
                    cur.text.pop();
                }
                let append = b.get(i + 1) == Some(&b'>');
                let mut j = i + 1 + usize::from(append);
                if b.get(j) == Some(&b'&') {
                    // `2>&1`: a duplicated descriptor, not a file.
                    j += 1;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    cur.text.push(' ');
                    i = j;
                    continue;
                }
                if c == b'>' {
                    redirect = Some((append, String::new()));
                } else {
                    // Input redirections read the file: keep it as a word.
                    cur.text.push(' ');
                }
                cur.text.push(' ');
                i = j;
            }
            b' ' | b'\t' => {
                if redirect.as_ref().is_some_and(|(_, t)| !t.is_empty()) {
                    flush_word(&mut cur, &mut redirect);
                }
                cur.text.push(' ');
                i += 1;
            }
            _ => {
                let end = next_char_end(s, i);
                push(&mut cur, &mut redirect, s, i, end);
                i = end;
            }
        }
    }
    flush_word(&mut cur, &mut redirect);
    if let Some(p) = lists.last_mut() {
        p.push(cur);
    }
    lists.retain(|p| {
        p.iter()
            .any(|c| !c.text.trim().is_empty() || !c.redirects.is_empty())
    });
    lists
}

fn next_char_end(s: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() && !s.is_char_boundary(j) {
        j += 1;
    }
    j.min(s.len())
}

fn push(cur: &mut Simple, redirect: &mut Option<(bool, String)>, s: &str, a: usize, b: usize) {
    push_str(cur, redirect, &s[a..b]);
}

fn push_str(cur: &mut Simple, redirect: &mut Option<(bool, String)>, piece: &str) {
    match redirect {
        Some((_, t)) => t.push_str(piece),
        None => cur.text.push_str(piece),
    }
}

/// The index of the `)` closing the `(` at `open`, quotes respected.
fn matching_paren(b: &[u8], open: usize) -> usize {
    let (mut depth, mut i) = (0usize, open);
    let (mut sq, mut dq) = (false, false);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' if !sq => i += 1,
            b'\'' if !dq => sq = !sq,
            b'"' if !sq => dq = !dq,
            b'(' if !sq && !dq => depth += 1,
            b')' if !sq && !dq => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// A redirection target or file argument, unquoted.
fn unquote(t: &str) -> String {
    match shell_words::split(t) {
        Ok(mut w) if w.len() == 1 => w.pop().unwrap_or_default(),
        _ => t.trim_matches(|c| c == '"' || c == '\'').to_owned(),
    }
}

struct Ctx<'r, 'i> {
    r: &'r mut ShellReading,
    intent: Option<&'i str>,
    /// Files a download wrote in this command line.
    downloaded: Vec<String>,
    /// Credential reads and network uses seen so far (every one, not
    /// only the first), to tell which command of a pipeline did what.
    creds: u32,
    nets: u32,
}

const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "fish", "ash"];
const INTERPRETERS: &[&str] = &[
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "php",
    "deno",
    "bun",
    "pwsh",
    "powershell",
    "source",
    ".",
];
const WRAPPERS: &[&str] = &[
    "sudo", "nohup", "time", "nice", "exec", "command", "builtin", "stdbuf", "doas", "setsid",
];
const NET_TOOLS: &[&str] = &[
    "curl", "wget", "nc", "ncat", "netcat", "telnet", "ssh", "scp", "sftp", "rsync", "ftp",
    "socat", "http", "https", "aria2c", "lynx", "links", "httpie", "xh", "openssl",
];

impl<'r, 'i> Ctx<'r, 'i> {
    fn new(r: &'r mut ShellReading, intent: Option<&'i str>) -> Ctx<'r, 'i> {
        Ctx {
            r,
            intent,
            downloaded: Vec::new(),
            creds: 0,
            nets: 0,
        }
    }

    fn script(&mut self, s: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        for pipeline in split(s) {
            let mut upstream_net = false;
            let mut upstream_cred = false;
            for (pos, simple) in pipeline.iter().enumerate() {
                let words = shell_words::split(&simple.text).unwrap_or_default();
                let prog = program(&words).map(|(p, _)| p.to_owned());
                let prog = prog.as_deref().unwrap_or("");
                let (cred0, net0) = (self.creds, self.nets);
                for sub in &simple.substitutions {
                    let (c0, n0) = (self.creds, self.nets);
                    self.script(sub, depth + 1);
                    // `sh -c "$(curl …)"`, `bash <(curl …)`, `eval "$(wget …)"`.
                    if (self.nets > n0 || sub_is_fetch(sub)) && runs_code(prog) {
                        self.r.note(
                            ShellFlag::DownloadRun,
                            format!("`{prog}` runs `{}`", sub.trim()),
                        );
                    }
                    if self.creds > c0 && is_net_prog(prog) {
                        self.r.note(
                            ShellFlag::CredentialOut,
                            format!("`{prog}` sends the output of `{}`", sub.trim()),
                        );
                    }
                }
                self.simple(simple, pos > 0, depth);
                let net_here = self.nets > net0 && is_net_simple(simple);
                if upstream_net && runs_code(prog) {
                    self.r.note(
                        ShellFlag::DownloadRun,
                        format!("a download piped into `{prog}`"),
                    );
                }
                if upstream_cred && net_here {
                    self.r.note(
                        ShellFlag::CredentialOut,
                        "credentials piped into a network command".to_owned(),
                    );
                }
                upstream_cred |= self.creds > cred0;
                upstream_net |= net_here;
            }
        }
    }

    fn cred(&mut self, what: String) {
        self.creds += 1;
        self.r.note(ShellFlag::CredentialRead, what);
    }

    fn net(&mut self, what: String) {
        self.nets += 1;
        self.r.note(ShellFlag::Network, what);
    }

    fn simple(&mut self, c: &Simple, piped_in: bool, depth: usize) {
        for (_, t) in &c.redirects {
            let t = unquote(t);
            if let Some(host) = dev_tcp(&t) {
                self.r.host(host);
                self.net(format!("`{t}`"));
            } else {
                self.written(&t);
            }
        }
        let Ok(words) = shell_words::split(&c.text) else {
            // Unbalanced quotes: the shell would refuse it; read the raw
            // words anyway so nothing hides behind a stray quote.
            let raw: Vec<String> = c.text.split_whitespace().map(str::to_owned).collect();
            self.words(&raw, piped_in, depth);
            return;
        };
        self.words(&words, piped_in, depth);
    }

    fn words(&mut self, words: &[String], piped_in: bool, depth: usize) {
        for w in words {
            self.secret_vars(w);
            if let Some(host) = dev_tcp(w) {
                self.r.host(host);
                self.net(format!("`{w}`"));
            }
        }
        let Some((prog, at)) = program(words) else {
            return;
        };
        let args = &words[at + 1..];
        // Arguments that name files are read unless the program only lists
        // or tests them.
        // Arguments that name credential files are reads, unless the
        // program only lists or tests them, or uses them without printing
        // (`source .env`, `docker --env-file .env`, `ssh -i key`).
        let uses_quietly = matches!(
            prog,
            "ls" | "test"
                | "["
                | "stat"
                | "file"
                | "chmod"
                | "chown"
                | "echo"
                | "source"
                | "."
                | "docker"
                | "docker-compose"
                | "podman"
                | "dotenv"
                | "ssh-add"
        );
        if !uses_quietly {
            let mut key_value = false;
            for a in args {
                // The identity file of `ssh -i key`, `scp -i key`.
                if std::mem::take(&mut key_value) {
                    continue;
                }
                key_value = a == "-i" && matches!(prog, "ssh" | "scp" | "sftp" | "rsync");
                let path = a
                    .rsplit_once("=@")
                    .map(|(_, p)| p)
                    .unwrap_or_else(|| a.trim_start_matches('@'));
                if let Some(what) = credential_path(path) {
                    self.cred(format!("`{what}`"));
                }
            }
        }
        match prog {
            "env" | "printenv" if args.iter().all(|a| a.starts_with('-')) => {
                self.cred(format!("`{prog}` dumps the environment"));
            }
            "printenv" if args.iter().any(|a| is_secret_name(a)) => {
                self.cred(format!("`printenv {}`", args.join(" ")));
            }
            "export" | "set" | "declare" | "compgen"
                if args.is_empty()
                    || args
                        .iter()
                        .all(|a| matches!(a.as_str(), "-p" | "-x" | "-px" | "-v" | "-e")) =>
            {
                self.cred(format!("`{prog}` dumps the environment"));
            }
            "eval" => self.script(&args.join(" "), depth + 1),
            p if SHELLS.contains(&p) => {
                if let Some(i) = args
                    .iter()
                    .position(|a| a == "-c" || a.ends_with('c') && a.starts_with('-'))
                {
                    if let Some(s) = args.get(i + 1) {
                        self.script(s, depth + 1);
                    }
                } else if let Some(f) = args.first().filter(|a| !a.starts_with('-')) {
                    self.ran_file(f, p);
                } else if piped_in {
                    // Reading a script from standard input: the pipeline
                    // check decides whether that is a download.
                }
            }
            p if INTERPRETERS.contains(&p) => self.interpreter(p, args),
            "xargs" => {
                let inner: Vec<String> = args
                    .iter()
                    .skip_while(|a| a.starts_with('-'))
                    .cloned()
                    .collect();
                self.words(&inner, piped_in, depth);
            }
            "crontab" if !args.iter().any(|a| a == "-l") => {
                self.persist("crontab");
            }
            "systemctl" | "launchctl" if args.iter().any(|a| a == "enable" || a == "load") => {
                self.persist(&format!("{prog} {}", args.join(" ")));
            }
            "tee" => {
                for a in args.iter().filter(|a| !a.starts_with('-')) {
                    self.written(a);
                }
            }
            "cp" | "mv" | "ln" | "install" | "rsync" if args.len() >= 2 => {
                if let Some(dest) = args.iter().rev().find(|a| !a.starts_with('-')) {
                    self.written(dest);
                }
                if prog == "rsync" {
                    self.net_args(prog, args);
                }
            }
            "sed" | "perl" if args.iter().any(|a| a.starts_with("-i")) => {
                if let Some(f) = args.iter().rev().find(|a| !a.starts_with('-')) {
                    self.written(f);
                }
            }
            "git" => self.git(args),
            "pip" | "pip3" | "uv" | "pipx" | "poetry" | "npm" | "pnpm" | "yarn" | "gem"
            | "cargo" | "go" | "conda" | "easy_install" => self.install(prog, args),
            p if NET_TOOLS.contains(&p) => {
                self.net_args(p, args);
                self.download_target(p, args);
            }
            _ => {
                // Running a file a download wrote in this command line.
                if self
                    .downloaded
                    .iter()
                    .any(|d| same_file(d, prog) || same_file(d, &words[at]))
                {
                    self.r.note(
                        ShellFlag::DownloadRun,
                        format!("runs the downloaded `{}`", words[at]),
                    );
                }
            }
        }
        if matches!(prog, "python" | "python3" | "python2")
            && args.first().is_some_and(|a| a == "-m")
            && let Some(m) = args.get(1)
        {
            if m == "pip" {
                self.install("pip", &args[2..]);
            } else if m == "http.server" {
                self.net("`python -m http.server`".to_owned());
            }
        }
    }

    fn secret_vars(&mut self, w: &str) {
        let b = w.as_bytes();
        let mut i = 0;
        while let Some(j) = w[i..].find('$') {
            let start = i + j + 1;
            let mut k = start;
            if b.get(k) == Some(&b'{') {
                k += 1;
            }
            let name_start = k;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
                k += 1;
            }
            let name = &w[name_start..k];
            if is_secret_name(name) {
                self.cred(format!("`${name}`"));
            }
            i = k.max(start);
            if i >= w.len() {
                break;
            }
        }
    }

    fn interpreter(&mut self, prog: &str, args: &[String]) {
        let code = args
            .iter()
            .position(|a| a == "-c" || a == "-e" || a == "--eval" || a == "-E")
            .and_then(|i| args.get(i + 1));
        match code {
            Some(code) => {
                let lc = code.to_ascii_lowercase();
                const NET: &[&str] = &[
                    "socket",
                    "urllib",
                    "requests.",
                    "http.client",
                    "httpx",
                    "urlopen",
                    "fetch(",
                    "net::http",
                    "lwp::",
                    "io::socket",
                    "xmlhttprequest",
                    "aiohttp",
                    "ftplib",
                    "smtplib",
                    "paramiko",
                    "http.request",
                    "https.request",
                    "http.get",
                ];
                if let Some(n) = NET.iter().find(|n| lc.contains(*n)) {
                    self.net(format!("`{prog}` code uses `{n}`"));
                    for u in urls(code) {
                        self.r.host(&u);
                    }
                }
                if lc.contains("os.environ") || lc.contains("process.env") || lc.contains("getenv")
                {
                    let what = if lc.contains("os.environ)")
                        || lc.contains("dict(os.environ")
                        || lc.contains("process.env)")
                    {
                        "the whole environment".to_owned()
                    } else {
                        "the environment".to_owned()
                    };
                    let secret = code
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .find(|w| is_secret_name(w));
                    if let Some(s) = secret {
                        self.cred(format!("`{prog}` reads `{s}`"));
                    } else if what.starts_with("the whole") {
                        self.cred(format!("`{prog}` reads {what}"));
                    }
                }
                for piece in code.split(['\'', '"']) {
                    if let Some(w) = credential_path(piece) {
                        self.cred(format!("`{w}`"));
                    }
                }
                if self.r.flags.contains(ShellFlag::Network)
                    && (lc.contains("exec(") || lc.contains("eval("))
                    && (lc.contains(".read()") || lc.contains(".text") || lc.contains(".content"))
                {
                    self.r.note(
                        ShellFlag::DownloadRun,
                        format!("`{prog}` evaluates fetched code"),
                    );
                }
            }
            None => {
                if let Some(f) = args.iter().find(|a| !a.starts_with('-')) {
                    self.ran_file(f, prog);
                }
            }
        }
    }

    fn ran_file(&mut self, f: &str, prog: &str) {
        if self.downloaded.iter().any(|d| same_file(d, f)) {
            self.r.note(
                ShellFlag::DownloadRun,
                format!("`{prog}` runs the downloaded `{f}`"),
            );
        }
    }

    fn net_args(&mut self, prog: &str, args: &[String]) {
        let mut host_found = false;
        for a in args {
            for h in urls(a) {
                self.r.host(&h);
                host_found = true;
            }
        }
        if !host_found {
            // `nc host 4444`, `ssh user@host`, `scp f user@host:/x`.
            let mut skip = false;
            for a in args {
                if skip {
                    skip = false;
                    continue;
                }
                if a.starts_with('-') {
                    // Options with a value (`-p 22`, `-i key`, `-o X`).
                    skip = matches!(
                        a.as_str(),
                        "-p" | "-i" | "-o" | "-l" | "-e" | "-w" | "-P" | "-F" | "-c"
                    );
                    continue;
                }
                let h = a.rsplit_once('@').map_or(a.as_str(), |(_, h)| h);
                let h = h.split(':').next().unwrap_or("");
                if looks_like_host(h) {
                    self.r.host(h);
                    break;
                }
            }
        }
        let what = match self.r.hosts.last() {
            Some(h) => format!("`{prog}` to `{h}`"),
            None => format!("`{prog}`"),
        };
        self.net(what);
    }

    fn download_target(&mut self, prog: &str, args: &[String]) {
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let out = match (prog, a.as_str()) {
                ("curl", "-o" | "--output") | ("wget", "-O" | "--output-document") => {
                    it.peek().map(|s| s.to_string())
                }
                ("curl", "-O" | "--remote-name") => args
                    .iter()
                    .find(|x| x.contains("://"))
                    .and_then(|u| u.rsplit('/').next().map(str::to_owned)),
                _ => None,
            };
            if let Some(f) = out.filter(|f| f != "-") {
                self.downloaded.push(f);
            }
        }
        if prog == "wget"
            && !args.iter().any(|a| a.starts_with("-O"))
            && let Some(f) = args
                .iter()
                .find(|x| x.contains("://"))
                .and_then(|u| u.rsplit('/').next())
        {
            self.downloaded.push(f.to_owned());
        }
    }

    fn git(&mut self, args: &[String]) {
        let sub: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-'))
            .collect();
        match sub.first().copied() {
            Some("push") => {
                if let Some(target) = sub.get(1).filter(|t| t.contains("://") || t.contains('@')) {
                    for h in urls(target) {
                        self.r.host(&h);
                    }
                    self.r
                        .note(ShellFlag::PushRemote, format!("`git push {target}`"));
                    self.net(format!("`git push {target}`"));
                }
            }
            Some("remote") if sub.get(1).is_some_and(|s| *s == "add" || *s == "set-url") => {
                let url = sub.last().copied().unwrap_or("");
                for h in urls(url) {
                    self.r.host(&h);
                }
                self.r.note(
                    ShellFlag::PushRemote,
                    format!("`git remote {} {url}`", sub[1]),
                );
            }
            Some("config") if sub.iter().any(|s| s.eq_ignore_ascii_case("core.hookspath")) => {
                self.persist("git config core.hooksPath");
            }
            _ => {}
        }
    }

    fn install(&mut self, prog: &str, args: &[String]) {
        let installs = args
            .iter()
            .any(|a| matches!(a.as_str(), "install" | "add" | "i"))
            || prog == "easy_install";
        if !installs {
            return;
        }
        let from_url = args.iter().find(|a| {
            a.contains("://")
                || a.starts_with("git+")
                || matches!(
                    a.as_str(),
                    "--index-url"
                        | "-i"
                        | "--extra-index-url"
                        | "--trusted-host"
                        | "--git"
                        | "--registry"
                )
                || a.starts_with("--index-url=")
                || a.starts_with("--extra-index-url=")
                || a.starts_with("--registry=")
        });
        if let Some(a) = from_url {
            for h in args.iter().flat_map(|x| urls(x)) {
                self.r.host(&h);
            }
            self.r.note(
                ShellFlag::InstallFromUrl,
                format!("`{prog}` installs from `{a}`"),
            );
        }
    }

    fn written(&mut self, path: &str) {
        if path.is_empty() || path == "/dev/null" || path.starts_with("/dev/std") {
            return;
        }
        if let Some(what) = persistence_path(path) {
            if !self.named_in_intent(path) {
                self.persist(what);
            }
        } else if is_dependency_manifest(path) && !self.named_in_intent(path) {
            self.r
                .note(ShellFlag::Dependency, format!("writes `{path}`"));
        }
    }

    fn persist(&mut self, what: &str) {
        self.r
            .note(ShellFlag::Persistence, format!("writes `{what}`"));
    }

    fn named_in_intent(&self, path: &str) -> bool {
        let base = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        self.intent
            .is_some_and(|i| base.len() >= 4 && i.contains(&base))
    }
}

/// The program of a simple command and its index: leading `VAR=value`
/// assignments and wrappers (`sudo`, `env X=1`, `timeout 5`) skipped.
fn program(words: &[String]) -> Option<(&str, usize)> {
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let base = w.rsplit('/').next().unwrap_or(w);
        if w.contains('=')
            && !w.starts_with('=')
            && !w.starts_with('-')
            && w.split('=')
                .next()
                .is_some_and(|n| n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        {
            i += 1;
            continue;
        }
        if WRAPPERS.contains(&base) {
            i += 1;
            while words.get(i).is_some_and(|a| a.starts_with('-')) {
                i += 1;
            }
            continue;
        }
        if base == "env"
            && words[i + 1..]
                .iter()
                .any(|a| !a.starts_with('-') && !a.contains('='))
        {
            i += 1;
            continue;
        }
        if base == "timeout" {
            i += 2;
            continue;
        }
        return Some((base, i));
    }
    None
}

fn runs_code(prog: &str) -> bool {
    SHELLS.contains(&prog) || INTERPRETERS.contains(&prog) || prog == "eval"
}

fn is_net_prog(p: &str) -> bool {
    NET_TOOLS.contains(&p)
}

fn is_net_simple(c: &Simple) -> bool {
    let words = shell_words::split(&c.text).unwrap_or_default();
    program(&words).is_some_and(|(p, _)| is_net_prog(p))
        || c.redirects.iter().any(|(_, t)| dev_tcp(t).is_some())
        || words.iter().any(|w| dev_tcp(w).is_some())
}

fn sub_is_fetch(sub: &str) -> bool {
    let words = shell_words::split(sub).unwrap_or_default();
    program(&words).is_some_and(|(p, _)| matches!(p, "curl" | "wget" | "fetch" | "aria2c"))
}

/// `/dev/tcp/host/port` and `/dev/udp/…`: the host.
fn dev_tcp(w: &str) -> Option<&str> {
    let rest = w
        .find("/dev/tcp/")
        .map(|i| &w[i + 9..])
        .or_else(|| w.find("/dev/udp/").map(|i| &w[i + 9..]))?;
    rest.split('/').next().filter(|h| !h.is_empty())
}

/// Hosts of the URLs in a word.
fn urls(w: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = w;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let auth = &after[..end];
        let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
        let host = host.split(':').next().unwrap_or("");
        if !host.is_empty() {
            out.push(host.to_owned());
        }
        rest = &after[end..];
    }
    if out.is_empty() {
        // `git@host:org/repo`
        if let Some((user, rest)) = w.split_once('@')
            && !user.contains('/')
            && rest.contains(':')
        {
            let h = rest.split(':').next().unwrap_or("");
            if looks_like_host(h) {
                out.push(h.to_owned());
            }
        }
    }
    out
}

fn looks_like_host(h: &str) -> bool {
    h.len() >= 3
        && h.contains('.')
        && !h.contains('/')
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        && h.bytes().any(|c| c.is_ascii_alphabetic())
        && !h.ends_with(".txt")
        && !h.ends_with(".sh")
        && !h.ends_with(".py")
        || (h.split('.').count() == 4 && h.split('.').all(|p| p.parse::<u8>().is_ok()))
}

/// Environment variable names that hold credentials: `AWS_*` (not the
/// region or profile) or a name with a credential word as one of its
/// `_`-separated parts (`GITHUB_TOKEN`, `DB_PASSWORD`, `STRIPE_API_KEY`;
/// not `TOKENS_USED`).
fn is_secret_name(name: &str) -> bool {
    if name.len() < 3 {
        return false;
    }
    let u = name.to_ascii_uppercase();
    if u.starts_with("AWS_")
        && !matches!(
            u.as_str(),
            "AWS_REGION" | "AWS_DEFAULT_REGION" | "AWS_PROFILE"
        )
    {
        return true;
    }
    const WORDS: &[&str] = &[
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "PAT",
    ];
    const PAIRS: &[&str] = &[
        "API_KEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "SECRET_KEY",
        "AUTH_KEY",
    ];
    u.split('_').any(|w| WORDS.contains(&w)) || PAIRS.iter().any(|p| u.contains(p))
}

/// A credential file named by a path, if it is one.
fn credential_path(p: &str) -> Option<&str> {
    let p = p.trim();
    if p.is_empty() || p.len() > 512 {
        return None;
    }
    let lower = p.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    const DIRS: &[&str] = &[
        ".aws/",
        ".ssh/id_",
        ".gnupg/",
        ".docker/config.json",
        ".kube/config",
        ".config/gcloud",
        ".azure/",
        "/etc/shadow",
        ".password-store",
        ".config/gh/hosts",
    ];
    const FILES: &[&str] = &[
        ".env",
        ".netrc",
        ".pgpass",
        ".git-credentials",
        ".npmrc",
        ".pypirc",
        "id_rsa",
        "id_ed25519",
        "id_ecdsa",
        "id_dsa",
        "credentials",
        "credentials.json",
        ".htpasswd",
        "secrets.yaml",
        "secrets.yml",
        "secrets.json",
        "secrets.txt",
        "service-account.json",
    ];
    let hit = DIRS
        .iter()
        .any(|d| lower.contains(d) || lower.ends_with(d.trim_end_matches('/')))
        || FILES.contains(&base)
        || (base.starts_with(".env.")
            && !base.ends_with(".example")
            && !base.ends_with(".sample")
            && !base.ends_with(".template"))
        || base.ends_with(".pem")
        || (base.ends_with(".key") && !base.ends_with("pub.key"))
        || base.ends_with(".p12")
        || base.ends_with(".pfx");
    hit.then_some(p)
}

/// A place that runs code later, if `p` is one.
fn persistence_path(p: &str) -> Option<&str> {
    let lower = p.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    const BASES: &[&str] = &[
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zprofile",
        ".zshenv",
        ".zlogin",
        "config.fish",
        "authorized_keys",
        "rc.local",
        ".gitlab-ci.yml",
        ".travis.yml",
        "jenkinsfile",
        "azure-pipelines.yml",
        "bitbucket-pipelines.yml",
        "crontab",
        ".pre-commit-config.yaml",
        "sitecustomize.py",
        "usercustomize.py",
    ];
    const DIRS: &[&str] = &[
        ".git/hooks/",
        ".github/workflows/",
        ".circleci/",
        ".buildkite/",
        "/etc/cron",
        "/var/spool/cron",
        "/etc/profile",
        "/etc/systemd/",
        ".config/systemd/",
        "launchagents/",
        "launchdaemons/",
        ".config/autostart/",
        "/etc/init.d/",
        ".husky/",
    ];
    (BASES.contains(&base) || DIRS.iter().any(|d| lower.contains(d)) || base.ends_with(".pth"))
        .then_some(p)
}

fn is_dependency_manifest(p: &str) -> bool {
    let lower = p.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    (base.starts_with("requirements") && base.ends_with(".txt"))
        || matches!(
            base,
            "setup.py"
                | "setup.cfg"
                | "pyproject.toml"
                | "pipfile"
                | "package.json"
                | "gemfile"
                | "constraints.txt"
        )
}

fn same_file(a: &str, b: &str) -> bool {
    let a = a.trim_start_matches("./");
    let b = b.trim_start_matches("./");
    !a.is_empty() && (a == b || b.ends_with(&format!("/{a}")))
}

#[cfg(test)]
mod tests;
