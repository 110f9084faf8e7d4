//! The HTTP surface of the fake API server: the core/v1 paths the provider calls.

use crate::cluster::{Cluster, Kind, pod_fields};
use crate::kubelet;
use crate::selector::Selector;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

type Shared = Arc<Mutex<Cluster>>;

pub(crate) fn router(cluster: Shared) -> Router {
    Router::new()
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods_ns).post(create_pod))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod).delete(delete_pod))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/api/v1/pods", get(list_pods_all))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            get(list_config_maps).post(create_config_map),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(get_config_map).delete(delete_config_map),
        )
        .route("/api/v1/namespaces/{ns}/secrets", axum::routing::post(create_secret))
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(get_secret).delete(delete_secret),
        )
        .route("/api/v1/nodes", get(list_nodes))
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the fake API server does not serve this path".into(),
            )
        })
        .with_state(cluster)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    label_selector: Option<String>,
    field_selector: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    allow_watch_bookmarks: Option<bool>,
    timeout_seconds: Option<u64>,
    follow: Option<bool>,
}

fn lock(cluster: &Shared) -> std::sync::MutexGuard<'_, Cluster> {
    cluster.lock().expect("fake cluster lock")
}

/// A `metav1.Status` error, as the API server sends for every failure.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn ok_json(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// The request's label and field selectors, or the 400 answer (boxed: a `Response` is large).
fn selectors(q: &ListQuery) -> Result<(Selector, Selector), Box<Response>> {
    let bad = |e: String| Box::new(status(StatusCode::BAD_REQUEST, "BadRequest", e));
    let labels = Selector::parse(q.label_selector.as_deref().unwrap_or("")).map_err(bad)?;
    let fields = Selector::parse(q.field_selector.as_deref().unwrap_or("")).map_err(bad)?;
    Ok((labels, fields))
}

/// Whether a pod in namespace `pns` is in a request's scope (`ns`, `None` for all) and
/// matches its selectors.
fn pod_selected(
    r: &crate::cluster::PodRecord,
    pns: &str,
    ns: Option<&str>,
    labels: &Selector,
    fields: &Selector,
) -> bool {
    ns.is_none_or(|n| n == pns)
        && labels.matches(&r.pod.metadata.labels.clone().unwrap_or_default())
        && fields.matches(&pod_fields(&r.pod))
}

fn is_watch(q: &ListQuery) -> bool {
    matches!(q.watch.as_deref(), Some("true" | "1"))
}

async fn list_pods_ns(State(c): State<Shared>, Path(ns): Path<String>, Query(q): Query<ListQuery>) -> Response {
    list_pods(c, Some(ns), q)
}

async fn list_pods_all(State(c): State<Shared>, Query(q): Query<ListQuery>) -> Response {
    list_pods(c, None, q)
}

fn list_pods(cluster: Shared, ns: Option<String>, q: ListQuery) -> Response {
    let (labels, fields) = match selectors(&q) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if is_watch(&q) {
        return watch(cluster, Kind::Pod, ns, labels, fields, &q);
    }
    let mut c = lock(&cluster);
    c.lists += 1;
    let items: Vec<Value> = c
        .pods
        .iter()
        .filter(|((pns, _), r)| pod_selected(r, pns, ns.as_deref(), &labels, &fields))
        .map(|(_, r)| serde_json::to_value(&r.pod).expect("pod to json"))
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": c.resource_version().to_string()}, "items": items}),
    )
}

async fn create_pod(State(cluster): State<Shared>, Path(ns): Path<String>, body: Bytes) -> Response {
    let mut pod: Pod = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", format!("decoding pod: {e}")),
    };
    let Some(name) = pod.metadata.name.clone() else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "Pod is invalid: metadata.name: Required value (generateName is not supported by the fake)".into(),
        );
    };
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("Pod \"{name}\" is invalid: spec.containers: Required value"),
        );
    }
    let key = (ns.clone(), name.clone());
    let created = {
        let mut c = lock(&cluster);
        if c.pods.contains_key(&key) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("pods \"{name}\" already exists"),
            );
        }
        pod.metadata.namespace = Some(ns.clone());
        pod.metadata.uid = Some(format!("uid-{}-{}", c.resource_version() + 1, name));
        pod.metadata.creation_timestamp = Some(kubelet::now());
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        c.pods.insert(
            key.clone(),
            crate::cluster::PodRecord {
                pod,
                log: Arc::default(),
                pgid: None,
                sidecars: Vec::new(),
                started: false,
                exited: false,
                evicted: false,
                _workdir: None,
                root: None,
                init_logs: Vec::new(),
            },
        );
        c.record_pod(&key, "ADDED");
        c.count_pod_created();
        serde_json::to_value(&c.pods[&key].pod).expect("pod to json")
    };
    kubelet::admit(cluster, key);
    ok_json(StatusCode::CREATED, &created)
}

async fn get_pod(State(cluster): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut c = lock(&cluster);
    c.gets += 1;
    match c.pods.get(&(ns, name.clone())) {
        Some(r) => ok_json(StatusCode::OK, &serde_json::to_value(&r.pod).expect("pod to json")),
        None => status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{name}\" not found")),
    }
}

async fn delete_pod(State(cluster): State<Shared>, Path((ns, name)): Path<(String, String)>, body: Bytes) -> Response {
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = (ns, name.clone());
    let (pod, grace_s) = {
        let mut c = lock(&cluster);
        let Some(r) = c.pods.get_mut(&key) else {
            return status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{name}\" not found"));
        };
        let default_grace = r
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let grace_s = options
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(default_grace)
            .max(0) as u64;
        let first = r.pod.metadata.deletion_timestamp.is_none();
        if first {
            r.pod.metadata.deletion_timestamp = Some(kubelet::now());
            r.pod.metadata.deletion_grace_period_seconds = Some(grace_s as i64);
            c.record_pod(&key, "MODIFIED");
        }
        (
            serde_json::to_value(&c.pods[&key].pod).expect("pod to json"),
            first.then_some(grace_s),
        )
    };
    if let Some(grace_s) = grace_s {
        kubelet::delete(cluster, key, grace_s);
    }
    ok_json(StatusCode::OK, &pod)
}

async fn pod_log(
    State(cluster): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let key = (ns, name.clone());
    let log = {
        let c = lock(&cluster);
        let Some(r) = c.pods.get(&key) else {
            return status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{name}\" not found"));
        };
        if kubelet::waiting(&c, &key) {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("container \"job\" in pod \"{name}\" is waiting to start: ContainerCreating"),
            );
        }
        r.log.clone()
    };
    if q.follow != Some(true) {
        let data = log.data.lock().expect("log lock").0.clone();
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], data).into_response();
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let mut offset = 0usize;
        loop {
            let notified = log.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (chunk, done) = {
                let d = log.data.lock().expect("log lock");
                (d.0[offset..].to_vec(), d.1)
            };
            offset += chunk.len();
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if done && offset == log.data.lock().expect("log lock").0.len() {
                return;
            }
            notified.await;
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

async fn list_config_maps(
    State(cluster): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let (labels, fields) = match selectors(&q) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if is_watch(&q) {
        return watch(cluster, Kind::ConfigMap, Some(ns), labels, fields, &q);
    }
    let mut c = lock(&cluster);
    c.lists += 1;
    let items: Vec<Value> = c
        .config_maps
        .iter()
        .filter(|((cns, _), m)| *cns == ns && labels.matches(&m.metadata.labels.clone().unwrap_or_default()))
        .map(|(_, m)| serde_json::to_value(m).expect("configmap to json"))
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": c.resource_version().to_string()}, "items": items}),
    )
}

async fn create_config_map(State(cluster): State<Shared>, Path(ns): Path<String>, body: Bytes) -> Response {
    let mut map: ConfigMap = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("decoding configmap: {e}"),
            );
        }
    };
    let Some(name) = map.metadata.name.clone() else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "ConfigMap is invalid: metadata.name: Required value".into(),
        );
    };
    let mut c = lock(&cluster);
    let key = (ns.clone(), name.clone());
    if c.config_maps.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("configmaps \"{name}\" already exists"),
        );
    }
    map.metadata.namespace = Some(ns.clone());
    map.metadata.creation_timestamp = Some(kubelet::now());
    let mut meta = std::mem::take(&mut map.metadata);
    let fields = BTreeMap::from([("metadata.name".to_string(), name.clone())]);
    c.record(
        Kind::ConfigMap,
        "ADDED",
        &ns,
        &mut meta,
        |m| {
            let mut copy = map.clone();
            copy.metadata = m.clone();
            serde_json::to_value(&copy).expect("configmap to json")
        },
        fields,
    );
    map.metadata = meta;
    let value = serde_json::to_value(&map).expect("configmap to json");
    c.config_maps.insert(key, map);
    ok_json(StatusCode::CREATED, &value)
}

async fn create_secret(State(cluster): State<Shared>, Path(ns): Path<String>, body: Bytes) -> Response {
    let mut secret: Secret = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", format!("decoding secret: {e}")),
    };
    let Some(name) = secret.metadata.name.clone() else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "Secret is invalid: metadata.name: Required value".into(),
        );
    };
    let mut c = lock(&cluster);
    let key = (ns.clone(), name.clone());
    if c.secrets.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("secrets \"{name}\" already exists"),
        );
    }
    secret.metadata.namespace = Some(ns);
    secret.metadata.creation_timestamp = Some(kubelet::now());
    secret.metadata.uid = Some(format!("secret-{}", c.resource_version()));
    let answer = serde_json::to_value(&secret).expect("secret to json");
    c.secrets.insert(key, secret);
    ok_json(StatusCode::CREATED, &answer)
}

async fn get_secret(State(cluster): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let c = lock(&cluster);
    match c.secrets.get(&(ns, name.clone())) {
        Some(s) => ok_json(StatusCode::OK, &serde_json::to_value(s).expect("secret to json")),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        ),
    }
}

async fn delete_secret(State(cluster): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut c = lock(&cluster);
    match c.secrets.remove(&(ns, name.clone())) {
        Some(_) => ok_json(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        ),
    }
}

async fn get_config_map(State(cluster): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut c = lock(&cluster);
    c.gets += 1;
    match c.config_maps.get(&(ns, name.clone())) {
        Some(m) => ok_json(StatusCode::OK, &serde_json::to_value(m).expect("configmap to json")),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("configmaps \"{name}\" not found"),
        ),
    }
}

async fn delete_config_map(State(cluster): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut c = lock(&cluster);
    let key = (ns.clone(), name.clone());
    let Some(mut map) = c.config_maps.remove(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("configmaps \"{name}\" not found"),
        );
    };
    let mut meta = std::mem::take(&mut map.metadata);
    let fields = BTreeMap::from([("metadata.name".to_string(), name.clone())]);
    c.record(
        Kind::ConfigMap,
        "DELETED",
        &ns,
        &mut meta,
        |m| {
            let mut copy = map.clone();
            copy.metadata = m.clone();
            serde_json::to_value(&copy).expect("configmap to json")
        },
        fields,
    );
    ok_json(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": "configmaps"}}),
    )
}

async fn list_nodes(State(cluster): State<Shared>, Query(q): Query<ListQuery>) -> Response {
    let (labels, _) = match selectors(&q) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut c = lock(&cluster);
    c.lists += 1;
    let items: Vec<Value> = c
        .nodes
        .iter()
        .filter(|n| labels.matches(&n.metadata.labels.clone().unwrap_or_default()))
        .map(|n| serde_json::to_value(n).expect("node to json"))
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": c.resource_version().to_string()}, "items": items}),
    )
}

/// A watch: the retained changes after `resourceVersion` that match, then new ones as they
/// happen, with bookmarks when allowed; `ERROR` 410 when the version is no longer retained.
fn watch(
    cluster: Shared,
    kind: Kind,
    ns: Option<String>,
    labels: Selector,
    fields: Selector,
    q: &ListQuery,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let from = q.resource_version.clone().unwrap_or_default();
    let bookmarks = q.allow_watch_bookmarks == Some(true);
    let timeout = Duration::from_secs(q.timeout_seconds.unwrap_or(1800));
    let (mut changed, bookmark_every, mut last, initial) = {
        let mut c = lock(&cluster);
        c.watches += 1;
        let every = Duration::from_millis(c.config.bookmark_interval_ms);
        match from.parse::<u64>() {
            Ok(rv) if rv > 0 => {
                if rv < c.compacted_through {
                    let message = format!("too old resource version: {rv} ({})", c.compacted_through);
                    let line = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Expired", "code": 410}});
                    return ok_json(StatusCode::OK, &line);
                }
                (c.changed.subscribe(), every, rv, Vec::new())
            }
            // No version (or "0"): the current state as ADDED events, then changes.
            _ => {
                let initial: Vec<Value> = match kind {
                    Kind::Pod => c
                        .pods
                        .iter()
                        .filter(|((pns, _), r)| pod_selected(r, pns, ns.as_deref(), &labels, &fields))
                        .map(|(_, r)| json!({"type": "ADDED", "object": r.pod}))
                        .collect(),
                    Kind::ConfigMap => c
                        .config_maps
                        .iter()
                        .filter(|((cns, _), m)| {
                            ns.as_ref().is_none_or(|n| n == cns)
                                && labels.matches(&m.metadata.labels.clone().unwrap_or_default())
                        })
                        .map(|(_, m)| json!({"type": "ADDED", "object": m}))
                        .collect(),
                };
                (c.changed.subscribe(), every, c.resource_version(), initial)
            }
        }
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let send = |v: Value| {
            let tx = tx.clone();
            async move { tx.send(Ok(Bytes::from(format!("{v}\n")))).await.is_ok() }
        };
        for v in initial {
            if !send(v).await {
                return;
            }
        }
        loop {
            let (lines, expired, current) = {
                let c = lock(&cluster);
                let expired = last < c.compacted_through;
                let lines: Vec<(u64, Value)> = c
                    .history
                    .iter()
                    .filter(|r| {
                        r.rv > last
                            && r.kind == kind
                            && ns.as_ref().is_none_or(|n| *n == r.namespace)
                            && labels.matches(&r.labels)
                            && fields.matches(&r.fields)
                    })
                    .map(|r| (r.rv, json!({"type": r.event_type, "object": r.object})))
                    .collect();
                (lines, expired, c.resource_version())
            };
            if expired {
                let message = format!("too old resource version: {last}");
                send(json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Expired", "code": 410}})).await;
                return;
            }
            for (_, line) in lines {
                if !send(line).await {
                    return;
                }
            }
            last = current;
            let kind_name = match kind {
                Kind::Pod => "Pod",
                Kind::ConfigMap => "ConfigMap",
            };
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                () = tokio::time::sleep(bookmark_every), if bookmarks => {
                    let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind_name, "apiVersion": "v1", "metadata": {"resourceVersion": last.to_string()}}});
                    if !send(bookmark).await { return }
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}
