//! Error grouping: an exception's fingerprint is its type plus the normalised frames of the
//! app's own code (function and file, never line numbers; library frames — site-packages,
//! node_modules, `java.*`, `org.springframework.*` … — left out), so the same bug thrown from
//! the same code path groups together across requests, line edits and library upgrades.
//! Pure functions; stack traces of Python, Node.js and the JVM are understood, anything else
//! falls back to the type plus the message with its numbers and ids blanked.
use sha2::{Digest, Sha256};

/// One frame as the fingerprint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub in_app: bool,
}

const JAVA_LIBRARY_PREFIXES: &[&str] = &[
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "jakarta.",
    "kotlin.",
    "scala.",
    "org.springframework.",
    "org.apache.",
    "org.eclipse.",
    "org.hibernate.",
    "io.netty.",
    "reactor.",
    "io.opentelemetry.",
    "io.micrometer.",
    "com.fasterxml.",
    "org.slf4j.",
    "ch.qos.",
    "io.undertow.",
    "org.junit.",
    "net.bytebuddy.",
    "com.zaxxer.",
];

fn python_library(file: &str) -> bool {
    file.contains("site-packages")
        || file.contains("dist-packages")
        || file.contains("/lib/python")
        || file.starts_with("<frozen")
        || file.contains("/otel-auto-instrumentation")
}

fn node_library(file: &str) -> bool {
    file.contains("node_modules")
        || file.starts_with("node:")
        || file.contains("(node:")
        || file.contains("internal/")
}

/// Frames of a stack trace, innermost last as the runtime printed them.
pub fn parse_frames(stack: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    for line in stack.lines().take(500) {
        let t = line.trim();
        // Python: File "/app/app.py", line 12, in handler
        if let Some(rest) = t.strip_prefix("File \"") {
            if let Some((file, tail)) = rest.split_once('"') {
                let function = tail.rsplit_once(" in ").map(|(_, f)| f.trim()).unwrap_or("");
                frames.push(Frame {
                    function: function.to_string(),
                    file: basename(file),
                    in_app: !python_library(file),
                });
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("at ") {
            // Java: at com.example.Foo.bar(Foo.java:42)
            if let Some((func, loc)) = rest.split_once('(') {
                let loc = loc.trim_end_matches(')');
                let func = func.trim();
                if loc.contains(".java")
                    || loc.contains(".kt")
                    || loc == "Native Method"
                    || loc.starts_with("Unknown Source")
                {
                    let func = strip_java_module(func);
                    let lib = JAVA_LIBRARY_PREFIXES.iter().any(|p| func.starts_with(p));
                    let file = loc.split(':').next().unwrap_or("");
                    frames.push(Frame {
                        function: normalise_fn(func),
                        file: file.to_string(),
                        in_app: !lib,
                    });
                    continue;
                }
                // Node: at handler (/app/server.js:12:9)
                let file = strip_line_col(loc);
                frames.push(Frame {
                    function: normalise_fn(func),
                    file: basename(&file),
                    in_app: !node_library(&file),
                });
                continue;
            }
            // Node, anonymous: at /app/server.js:12:9
            let file = strip_line_col(rest);
            frames.push(Frame {
                function: String::new(),
                file: basename(&file),
                in_app: !node_library(&file),
            });
        }
    }
    frames
}

fn strip_java_module(func: &str) -> &str {
    // "app//com.example.Foo.bar" or "java.base/java.lang.Thread.run"
    func.rsplit_once('/').map(|(_, f)| f).unwrap_or(func)
}

fn strip_line_col(loc: &str) -> String {
    let mut s = loc.trim().trim_end_matches(')').to_string();
    for _ in 0..2 {
        if let Some((head, tail)) = s.rsplit_once(':')
            && !tail.is_empty()
            && tail.bytes().all(|b| b.is_ascii_digit())
        {
            s = head.to_string();
        }
    }
    s
}

fn basename(path: &str) -> String {
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_string()
}

/// Drops generated suffixes that change between builds (`lambda$handler$0`, `$$Lambda$123/0x…`).
fn normalise_fn(f: &str) -> String {
    let f = f.trim().trim_start_matches("async ").trim_start_matches("new ");
    let mut out = String::with_capacity(f.len());
    let mut last_digit = false;
    for ch in f.chars() {
        if ch.is_ascii_digit() {
            if !last_digit {
                out.push('N');
            }
            last_digit = true;
        } else {
            out.push(ch);
            last_digit = false;
        }
    }
    out
}

/// The message with numbers, hex and quoted values blanked, for grouping without frames.
pub fn normalise_message(msg: &str) -> String {
    let mut out = String::new();
    let mut in_token = false;
    for word in msg.split_whitespace().take(40) {
        if in_token {
            out.push(' ');
        }
        in_token = true;
        let digits = word.bytes().filter(u8::is_ascii_digit).count();
        if digits > 0 || word.starts_with('\'') || word.starts_with('"') {
            out.push('_');
        } else {
            out.push_str(word);
        }
    }
    out
}

/// The group id (16 hex chars) of an exception.
pub fn fingerprint(kind: &str, message: &str, stack: &str) -> String {
    let frames = parse_frames(stack);
    let app: Vec<&Frame> = frames.iter().filter(|f| f.in_app).collect();
    let mut h = Sha256::new();
    h.update(kind.trim().as_bytes());
    h.update(b"\n");
    if app.is_empty() {
        if frames.is_empty() {
            h.update(normalise_message(message).as_bytes());
        } else {
            // only library frames: the outermost library entry point still tells paths apart
            for f in frames.iter().take(3) {
                h.update(f.function.as_bytes());
                h.update(b"@");
                h.update(f.file.as_bytes());
                h.update(b"\n");
            }
        }
    } else {
        for f in app.iter().take(30) {
            h.update(f.function.as_bytes());
            h.update(b"@");
            h.update(f.file.as_bytes());
            h.update(b"\n");
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// The exception type when only a stack trace is known (its first line, "Type: message").
pub fn type_from_stack(stack: &str) -> Option<(String, String)> {
    for line in stack.lines().rev().chain(stack.lines()) {
        let t = line.trim();
        if t.is_empty() || t.starts_with("at ") || t.starts_with("File ") || t.starts_with("Traceback") {
            continue;
        }
        if let Some((k, m)) = t.split_once(": ")
            && !k.contains(' ')
            && !k.is_empty()
        {
            return Some((k.to_string(), m.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY: &str = "Traceback (most recent call last):\n  File \"/usr/local/lib/python3.11/site-packages/flask/app.py\", line 1473, in wsgi_app\n    response = self.full_dispatch_request()\n  File \"/app/app.py\", line 31, in error\n    raise RuntimeError(\"boom 42\")\nRuntimeError: boom 42\n";
    const NODE: &str = "Error: boom\n    at handler (/app/server.js:21:11)\n    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)\n    at next (node:internal/process/task_queues:140:7)";
    const JAVA: &str = "java.lang.IllegalStateException: boom\n\tat com.example.demo.Controller.error(Controller.java:42)\n\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)";

    #[test]
    fn frames_of_each_runtime() {
        let py = parse_frames(PY);
        assert_eq!(py.len(), 2);
        assert!(!py[0].in_app && py[1].in_app);
        assert_eq!(py[1].function, "error");
        let node = parse_frames(NODE);
        assert_eq!(node.iter().filter(|f| f.in_app).count(), 1);
        assert_eq!(node[0].function, "handler");
        assert_eq!(node[0].file, "server.js");
        let java = parse_frames(JAVA);
        assert_eq!(java.len(), 3);
        assert!(java[0].in_app && !java[1].in_app && !java[2].in_app);
    }

    #[test]
    fn fingerprint_ignores_line_numbers_and_library_frames() {
        let moved = PY.replace("line 31", "line 35").replace("line 1473", "line 1500");
        assert_eq!(
            fingerprint("RuntimeError", "boom 42", PY),
            fingerprint("RuntimeError", "boom 7", &moved)
        );
        let other = PY.replace("in error", "in orders");
        assert_ne!(
            fingerprint("RuntimeError", "", PY),
            fingerprint("RuntimeError", "", &other)
        );
        assert_ne!(
            fingerprint("ValueError", "", PY),
            fingerprint("RuntimeError", "", PY)
        );
        // no stack: type + message shape
        assert_eq!(
            fingerprint("E", "id 5 missing", ""),
            fingerprint("E", "id 77 missing", "")
        );
        assert_eq!(
            type_from_stack(JAVA).unwrap().0,
            "java.lang.IllegalStateException"
        );
        assert_eq!(type_from_stack(PY).unwrap().0, "RuntimeError");
    }
}
