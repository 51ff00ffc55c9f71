//! Error grouping: an exception's fingerprint is its type, the HTTP status class of the request
//! it failed (a 403 and a 500 are different problems), its throw site (the innermost frame of
//! the app's own code, with its line) and the normalised frames of the app's code above it
//! (function and file, no line numbers; library frames — site-packages, node_modules, `java.*`,
//! `org.springframework.*` … — and the JVM's synthetic frames — reflection accessors, proxies,
//! lambdas, which change as the JIT warms up — left out). So the same bug thrown from the same
//! place groups together across requests, library upgrades and edits elsewhere in the file,
//! and two `throw`s in one function are two groups (editing lines above a throw starts a new
//! group for it: the price of telling throw sites apart where no source text is sent).
//! Pure functions; stack traces of Python, Node.js and the JVM are understood, anything else
//! falls back to the type plus the message with its numbers and ids blanked.
use sha2::{Digest, Sha256};

/// One frame as the fingerprint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
    pub in_app: bool,
}

/// JVM frames that say how a call was dispatched, not where the code is: reflection
/// accessors (native, generated, direct method handles — the JVM switches between them as it
/// warms up), dynamic proxies, CGLIB subclasses and lambda forms.
fn jvm_synthetic(func: &str, loc: &str) -> bool {
    loc.starts_with("Unknown Source")
        || loc == "<generated>"
        || func.contains("GeneratedMethodAccessor")
        || func.contains("GeneratedConstructorAccessor")
        || func.contains("MethodAccessorImpl")
        || func.contains("MethodHandleAccessor")
        || func.contains("$Proxy")
        || func.starts_with("jdk.proxy")
        || func.contains("$$")
        || func.contains("LambdaForm$")
}

/// The line number at the end of a location (`File.java:42`, `/app/x.js:12:9`).
fn line_of(loc: &str) -> Option<u32> {
    let parts: Vec<&str> = loc.trim_end_matches(')').rsplitn(3, ':').collect();
    // `file:line:col` → [col, line, file]; `file:line` → [line, file]
    match parts.as_slice() {
        [col, line, _] if col.parse::<u32>().is_ok() => line.parse().ok(),
        [line, ..] => line.parse().ok(),
        _ => None,
    }
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
                let line = tail
                    .split_once("line ")
                    .and_then(|(_, l)| l.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|l| l.parse().ok());
                frames.push(Frame {
                    function: function.to_string(),
                    file: basename(file),
                    line,
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
                let func_j = strip_java_module(func);
                if loc.contains(".java")
                    || loc.contains(".kt")
                    || loc == "Native Method"
                    || loc.starts_with("Unknown Source")
                    || (loc == "<generated>" && func_j.contains('.'))
                {
                    if jvm_synthetic(func_j, loc) {
                        continue;
                    }
                    let lib = JAVA_LIBRARY_PREFIXES.iter().any(|p| func_j.starts_with(p));
                    let file = loc.split(':').next().unwrap_or("");
                    frames.push(Frame {
                        function: normalise_fn(func_j),
                        file: file.to_string(),
                        line: line_of(loc),
                        in_app: !lib,
                    });
                    continue;
                }
                // Node: at handler (/app/server.js:12:9)
                let file = strip_line_col(loc);
                frames.push(Frame {
                    function: normalise_fn(func),
                    file: basename(&file),
                    line: line_of(loc),
                    in_app: !node_library(&file),
                });
                continue;
            }
            // Node, anonymous: at /app/server.js:12:9
            let file = strip_line_col(rest);
            frames.push(Frame {
                function: String::new(),
                file: basename(&file),
                line: line_of(rest),
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

/// The group id (16 hex chars) of an exception; `status` is the HTTP status of the request
/// it failed (0 when unknown): a 4xx makes its own group.
pub fn fingerprint(kind: &str, message: &str, stack: &str, status: i64) -> String {
    let mut frames = parse_frames(stack);
    // Python prints the innermost frame last, the JVM and Node.js first: put it first
    if stack.contains("Traceback (most recent call last)") {
        frames.reverse();
    }
    let app: Vec<&Frame> = frames.iter().filter(|f| f.in_app).collect();
    let mut h = Sha256::new();
    h.update(kind.trim().as_bytes());
    h.update(b"\n");
    // a 4xx is the client's problem, told apart from the same exception failing a request;
    // 5xx and unknown stay together, so an error log and the span event of the same failure
    // (the log has no status) land in one group
    if (400..500).contains(&status) {
        h.update(b"4xx\n");
    }
    if app.is_empty() {
        if frames.is_empty() {
            h.update(normalise_message(message).as_bytes());
        } else {
            // only library frames: where the library threw, and the entry points above it
            for f in frames.iter().take(3) {
                hash_frame(&mut h, f);
            }
            if let Some(l) = frames[0].line {
                h.update(l.to_string().as_bytes());
            }
        }
    } else {
        // the throw site with its line, then the path of app code that led there
        if let Some(l) = app[0].line {
            h.update(format!("{l}\n").as_bytes());
        }
        for f in app.iter().take(30) {
            hash_frame(&mut h, f);
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// A frame's part of a fingerprint: function and file, never the line.
fn hash_frame(h: &mut Sha256, f: &Frame) {
    h.update(f.function.as_bytes());
    h.update(b"@");
    h.update(f.file.as_bytes());
    h.update(b"\n");
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

    /// The same Spring controller throw, before and after the JVM inflated its reflection
    /// accessor (the first calls go through native accessors, later ones through generated
    /// ones or method handles), behind a CGLIB proxy.
    const JAVA_COLD: &str = "java.lang.IllegalStateException: simulated failure\n\tat com.example.shop.OrderController.error(OrderController.java:57)\n\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)\n\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke(NativeMethodAccessorImpl.java:77)\n\tat java.base/jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke(DelegatingMethodAccessorImpl.java:43)\n\tat java.base/java.lang.reflect.Method.invoke(Method.java:568)\n\tat com.example.shop.OrderController$$SpringCGLIB$$0.error(<generated>)\n\tat org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:258)";
    const JAVA_WARM: &str = "java.lang.IllegalStateException: simulated failure\n\tat com.example.shop.OrderController.error(OrderController.java:57)\n\tat jdk.internal.reflect.GeneratedMethodAccessor41.invoke(Unknown Source)\n\tat java.base/jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke(DelegatingMethodAccessorImpl.java:43)\n\tat java.base/java.lang.reflect.Method.invoke(Method.java:568)\n\tat com.example.shop.OrderController$$SpringCGLIB$$0.error(<generated>)\n\tat org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:258)";
    const JAVA_MH: &str = "java.lang.IllegalStateException: simulated failure\n\tat com.example.shop.OrderController.error(OrderController.java:57)\n\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)\n\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)\n\tat org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:258)";

    #[test]
    fn the_jvm_warming_up_does_not_split_a_group() {
        let cold = fingerprint(
            "java.lang.IllegalStateException",
            "simulated failure",
            JAVA_COLD,
            500,
        );
        assert_eq!(
            cold,
            fingerprint(
                "java.lang.IllegalStateException",
                "simulated failure",
                JAVA_WARM,
                500
            )
        );
        assert_eq!(
            cold,
            fingerprint(
                "java.lang.IllegalStateException",
                "simulated failure",
                JAVA_MH,
                500
            )
        );
        // no synthetic frame is kept at all
        assert!(
            parse_frames(JAVA_COLD)
                .iter()
                .all(|f| !f.function.contains("$$") && !f.function.contains("Accessor"))
        );
    }

    #[test]
    fn throw_sites_and_client_errors_are_groups_of_their_own() {
        let other_line = JAVA_WARM.replace("OrderController.java:57", "OrderController.java:61");
        let k = "org.springframework.web.server.ResponseStatusException";
        assert_ne!(
            fingerprint(k, "403 FORBIDDEN", JAVA_WARM, 403),
            fingerprint(k, "500 INTERNAL_SERVER_ERROR", &other_line, 500),
            "two throws in one method"
        );
        assert_ne!(
            fingerprint(k, "x", JAVA_WARM, 403),
            fingerprint(k, "x", JAVA_WARM, 500),
            "a 4xx is not the same problem as a 5xx"
        );
        // a log of the failure (no status) joins its span event's group
        assert_eq!(
            fingerprint(k, "x", JAVA_WARM, 500),
            fingerprint(k, "x", JAVA_WARM, 0)
        );
        // Python: the throw site is the last frame printed
        let py_other = PY.replace("line 31", "line 40");
        assert_ne!(
            fingerprint("RuntimeError", "boom", PY, 500),
            fingerprint("RuntimeError", "boom", &py_other, 500)
        );
        let node_other = NODE.replace("server.js:21:11", "server.js:30:5");
        assert_ne!(
            fingerprint("Error", "boom", NODE, 500),
            fingerprint("Error", "boom", &node_other, 500)
        );
        let node_lib_moved = NODE.replace("layer.js:95:5", "layer.js:97:5");
        assert_eq!(
            fingerprint("Error", "boom", NODE, 500),
            fingerprint("Error", "boom", &node_lib_moved, 500)
        );
    }

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
        // the reflection accessor is dispatch, not code: dropped
        assert_eq!(java.len(), 2);
        assert!(java[0].in_app && !java[1].in_app);
        assert_eq!(java[0].line, Some(42));
        assert_eq!(node[0].line, Some(21));
        assert_eq!(py[1].line, Some(31));
    }

    #[test]
    fn fingerprint_ignores_line_numbers_and_library_frames() {
        // library lines move with upgrades: same group
        let moved = PY.replace("line 1473", "line 1500");
        assert_eq!(
            fingerprint("RuntimeError", "boom 42", PY, 500),
            fingerprint("RuntimeError", "boom 7", &moved, 500)
        );
        let other = PY.replace("in error", "in orders");
        assert_ne!(
            fingerprint("RuntimeError", "", PY, 0),
            fingerprint("RuntimeError", "", &other, 0)
        );
        assert_ne!(
            fingerprint("ValueError", "", PY, 0),
            fingerprint("RuntimeError", "", PY, 0)
        );
        // no stack: type + message shape
        assert_eq!(
            fingerprint("E", "id 5 missing", "", 0),
            fingerprint("E", "id 77 missing", "", 0)
        );
        assert_eq!(
            type_from_stack(JAVA).unwrap().0,
            "java.lang.IllegalStateException"
        );
        assert_eq!(type_from_stack(PY).unwrap().0, "RuntimeError");
    }
}
