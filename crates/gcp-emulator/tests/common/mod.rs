//! Shared helpers: a started emulator and a tiny JSON client.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use serde_json::Value;

/// The number the test project `p` has in every emulator [`Api::start`] starts, as Google would have assigned it.
/// Secret Manager returns names with it (`projects/123456789/secrets/x`) even when called with the id.
pub const P_NUMBER: u64 = 123456789;

/// `rest` (e.g. `secrets/x/versions/1`) under project `p`, in the numbered form Google returns.
pub fn p_name(rest: &str) -> String {
    format!("projects/{P_NUMBER}/{rest}")
}

pub struct Api {
    pub emu: gcp_emulator::Emulator,
    pub http: reqwest::Client,
    /// The bearer token calls carry, if any.
    pub token: std::sync::Mutex<Option<String>>,
}

impl Api {
    pub async fn start(config: gcp_emulator::Config) -> Api {
        let emu = gcp_emulator::spawn(config).await.unwrap();
        emu.state().set_project_number("p", P_NUMBER).unwrap();
        Api {
            emu,
            http: reqwest::Client::new(),
            token: std::sync::Mutex::new(None),
        }
    }

    pub async fn default() -> Api {
        Self::start(gcp_emulator::Config::default()).await
    }

    /// From now on, calls carry `token` (`None`: no `Authorization` header).
    pub fn use_token(&self, token: Option<&str>) {
        *self.token.lock().unwrap() = token.map(str::to_owned);
    }

    /// Sends a request and returns the status and the JSON body (Null when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.emu.url(), path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if let Some(token) = self.token.lock().unwrap().clone() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path} -> {v}");
        v
    }

    /// Asserts Google's error shape and returns the message.
    pub async fn err(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        http: u16,
        status: &str,
    ) -> String {
        let (code, v) = self.call(method, path, body).await;
        assert_eq!(code, http, "{method} {path} -> {v}");
        assert_eq!(v["error"]["code"], http, "{v}");
        assert_eq!(v["error"]["status"], status, "{v}");
        assert!(v["error"]["details"].is_array(), "{v}");
        v["error"]["message"].as_str().unwrap().to_string()
    }

    pub async fn create_secret(&self, project: &str, id: &str) -> Value {
        self.ok(
            "POST",
            &format!("/v1/projects/{project}/secrets?secretId={id}"),
            Some(serde_json::json!({"replication": {"automatic": {}}})),
        )
        .await
    }

    pub async fn add_version(&self, secret: &str, data: &[u8]) -> Value {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let crc = crc32c::crc32c(data).to_string();
        self.ok(
            "POST",
            &format!("/v1/{secret}:addVersion"),
            Some(serde_json::json!({"payload": {"data": b64, "dataCrc32c": crc}})),
        )
        .await
    }
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// Starts the emulator's binary on a random port with `args` (and `TMPDIR` set to `tmp`, when given); returns it
/// (killed on drop) and its base URL, as it prints it.
pub async fn start_binary(args: &[String], tmp: Option<&std::path::Path>) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcp-emulator"));
    command.args(["--listen", "127.0.0.1:0"]).args(args);
    if let Some(tmp) = tmp {
        command.env("TMPDIR", tmp);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let url = line
        .strip_prefix("gcp-emulator listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    (child, url)
}
