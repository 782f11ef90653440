# A one-node Kubernetes cluster for the deployment tier (`scripts/testbed up cluster`), sourced by scripts/testbed.
# Its own etcd and kube-apiserver (so the cluster's traffic never reaches the audit tests' webhook), the
# controller manager, the scheduler, kube-proxy (iptables) and a kubelet on a containerd of its own, all built from
# the same k8s.io/kubernetes release as the testbed's API server. Pods are bridged (Debian's CNI plugins) on
# 10.244.0.0/24; the node's address is 10.250.0.1 on the loopback device (this machine has no dummy interfaces),
# where pods also reach the host's Kafka (its NODE listener) and OpenSearch, bound to that address only.
#
# These machines mount cgroup v1 (hybrid, no systemd as PID 1): the kubelet runs with `failCgroupV1: false` and
# the cgroupfs driver. There is no registry to pull from: the images pods run are imported into containerd.
CLUSTER_NODE=palisade-node
CLUSTER_NODE_IP=10.250.0.1
CLUSTER_POD_CIDR=10.244.0.0/24
CLUSTER_SERVICE_CIDR=10.97.0.0/16
CLUSTER_ETCD_PORT=22379
CLUSTER_ETCD_PEER_PORT=22380
CLUSTER_APISERVER_PORT=26443
# The standard socket path, so the collector DaemonSet's hostPath mount finds it as on any node.
CLUSTER_CONTAINERD_SOCKET=/run/containerd/containerd.sock
CLUSTER_DIR=$DIR/cluster
# The audit Service's address in the testbed overlay (deploy/k8s/overlays/testbed): the API server's webhook
# reaches it through kube-proxy, as a control-plane node of a real cluster does.
CLUSTER_AUDIT_SERVICE_IP=10.97.0.10
HELM_VERSION=v4.3.2
CLUSTER_PROCESSES="cluster-containerd cluster-etcd cluster-apiserver cluster-controller-manager cluster-scheduler cluster-kubelet cluster-proxy"

cluster_bin() { echo "$CACHE/bin/$1-$K8S_VERSION"; }

cluster_pki() {
  local pki=$CLUSTER_DIR/pki
  [ -f "$pki/.complete" ] && return 0
  pki
  rm -rf "$pki"; mkdir -p "$pki"; chmod 700 "$pki"
  cp "$DIR/pki/ca.crt" "$pki/ca.crt"
  leaf() { # name subject san
    openssl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' > "$pki/$1.ext"
    if [ -n "$3" ]; then printf 'subjectAltName=%s\n' "$3" >> "$pki/$1.ext"; fi
    openssl x509 -req -in "$pki/$1.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" -CAcreateserial \
      -out "$pki/$1.crt" -days 3650 -extfile "$pki/$1.ext" 2>/dev/null
    rm -f "$pki/$1.csr" "$pki/$1.ext"
  }
  leaf apiserver "/CN=kube-apiserver" "IP:$CLUSTER_NODE_IP,IP:127.0.0.1,IP:10.97.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  leaf admin "/O=system:masters/CN=palisade-cluster-admin" ""
  leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" ""
  leaf kubelet "/O=system:nodes/CN=system:node:$CLUSTER_NODE" "IP:$CLUSTER_NODE_IP,DNS:$CLUSTER_NODE"
  leaf controller-manager "/CN=system:kube-controller-manager" ""
  leaf scheduler "/CN=system:kube-scheduler" ""
  leaf proxy "/CN=system:kube-proxy" ""
  # The serving pair of the deployed `palisade audit` (Secret palisade-audit-tls) and the token the API server's
  # webhook presents (Secret palisade-audit-token); the tier creates both Secrets from these files.
  leaf audit-webhook "/CN=palisade-audit" "DNS:palisade-audit.palisade.svc,DNS:palisade-audit.palisade.svc.cluster.local,IP:$CLUSTER_AUDIT_SERVICE_IP"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null; openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pki/audit-webhook.token"
  chmod 600 "$pki"/*.key "$pki/audit-webhook.token"
  touch "$pki/.complete"
}

cluster_kubeconfig() { # name user-cert
  local pki=$CLUSTER_DIR/pki
  cat > "$CLUSTER_DIR/$1.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: palisade-testbed
  cluster: {server: "https://$CLUSTER_NODE_IP:$CLUSTER_APISERVER_PORT", certificate-authority: $pki/ca.crt}
users:
- name: $1
  user: {client-certificate: $pki/$2.crt, client-key: $pki/$2.key}
contexts:
- name: palisade-testbed
  context: {cluster: palisade-testbed, user: $1}
current-context: palisade-testbed
YAML
}

# The node's address on lo; Kafka's NODE listener and OpenSearch's HTTP bind it too (nothing else of them
# leaves loopback), so it is added before they start.
cluster_node_address() {
  has_node_address && return 0
  # Not root: no node address, so Kafka and OpenSearch stay on loopback alone (the cluster needs root anyway).
  [ "$(id -u)" = 0 ] || return 0
  ip addr add "$CLUSTER_NODE_IP/32" dev lo
}

has_node_address() { case $(ip -o addr show dev lo) in *" $CLUSTER_NODE_IP/"*) return 0 ;; *) return 1 ;; esac; }

cluster_network() {
  cluster_node_address
  sysctl -qw net.ipv4.ip_forward=1
  [ -w /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
  mkdir -p "$CLUSTER_DIR/cni"
  cat > "$CLUSTER_DIR/cni/10-palisade-testbed.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "palisade-testbed",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$CLUSTER_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

cluster_up() {
  local missing=""
  for package in containerd runc containernetworking-plugins iptables conntrack; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    log "installing$missing from Debian"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null \
      || die "apt could not install$missing"
  fi
  # `down` removes the pods through the CRI.
  ensure_crictl
  # The standard socket belongs to the host's own containerd where there is one: never take it over. One that
  # answers nobody (ours, killed without `down`) is removed.
  if [ -S "$CLUSTER_CONTAINERD_SOCKET" ] && ! running cluster-containerd; then
    if timeout 5 ctr --address "$CLUSTER_CONTAINERD_SOCKET" version >/dev/null 2>&1; then
      die "$CLUSTER_CONTAINERD_SOCKET answers and is not the testbed's: this machine runs a containerd of its own"
    fi
    rm -f "$CLUSTER_CONTAINERD_SOCKET" "$CLUSTER_CONTAINERD_SOCKET.ttrpc"
  fi
  if [ ! -x "$(cluster_bin kubelet)" ] || [ ! -x "$(cluster_bin kubectl)" ]; then
    log "building the node components of Kubernetes $K8S_VERSION from the Go module proxy (a few minutes, once)"
  fi
  "$here/testbed.d/build-apiserver.sh" cluster >/dev/null || die "cannot build the cluster's components"
  cluster_pki
  cluster_network
  local pki=$CLUSTER_DIR/pki
  cluster_kubeconfig admin admin
  cluster_kubeconfig kubelet kubelet
  cluster_kubeconfig controller-manager controller-manager
  cluster_kubeconfig scheduler scheduler
  cluster_kubeconfig proxy proxy

  if ! running cluster-containerd; then
    mkdir -p "$CLUSTER_DIR/containerd" "$DIR/data/cluster-containerd" /run/containerd
    cat > "$CLUSTER_DIR/containerd/config.toml" <<TOML
version = 2
root = "$DIR/data/cluster-containerd"
state = "$DIR/run/cluster-containerd-state"
[grpc]
  address = "$CLUSTER_CONTAINERD_SOCKET"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$TESTBOX_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
TOML
    start_bg cluster-containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
    wait_for cluster-containerd 60 cluster_containerd_ready
  fi

  if ! running cluster-etcd; then
    # A start from nothing is a new cluster: nothing a previous run deployed (or left half deleted) is in it.
    # (etcd alone restarted under a running control plane keeps its data.)
    local process fresh=1
    for process in $CLUSTER_PROCESSES; do
      [ "$process" != cluster-etcd ] && [ "$process" != cluster-containerd ] && running "$process" && fresh=0
    done
    [ "$fresh" = 1 ] && rm -rf "$DIR/data/cluster-etcd"
    mkdir -p "$DIR/data/cluster-etcd"
    start_bg cluster-etcd "$CACHE/bin/etcd-$ETCD_VERSION" --name cluster --data-dir "$DIR/data/cluster-etcd" \
      --listen-client-urls "http://127.0.0.1:$CLUSTER_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$CLUSTER_ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$CLUSTER_ETCD_PEER_PORT" \
      --initial-advertise-peer-urls "http://127.0.0.1:$CLUSTER_ETCD_PEER_PORT" \
      --initial-cluster "cluster=http://127.0.0.1:$CLUSTER_ETCD_PEER_PORT" --log-level warn
    wait_for cluster-etcd 60 curl -fsS "http://127.0.0.1:$CLUSTER_ETCD_PORT/health"
  fi

  if ! running cluster-apiserver; then
    cp "$here/../deploy/audit-policy.yaml" "$CLUSTER_DIR/audit-policy.yaml"
    # The webhook kubeconfig as deploy/k8s/apiserver/ ships it, but for the address: the host resolves no
    # cluster names, so the Service is reached by its fixed IP and the certificate checked for its DNS name.
    cat > "$CLUSTER_DIR/audit-webhook.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: palisade
  cluster:
    server: https://$CLUSTER_AUDIT_SERVICE_IP:443/audit/webhook
    tls-server-name: palisade-audit.palisade.svc
    certificate-authority: $pki/ca.crt
users:
- name: kube-apiserver
  user:
    tokenFile: $pki/audit-webhook.token
contexts:
- name: palisade
  context: {cluster: palisade, user: kube-apiserver}
current-context: palisade
YAML
    start_bg cluster-apiserver "$(cluster_bin kube-apiserver)" \
      --etcd-servers "http://127.0.0.1:$CLUSTER_ETCD_PORT" --bind-address 0.0.0.0 --advertise-address "$CLUSTER_NODE_IP" \
      --secure-port "$CLUSTER_APISERVER_PORT" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
      --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
      --service-cluster-ip-range "$CLUSTER_SERVICE_CIDR" \
      --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
      --service-account-signing-key-file "$pki/sa.key" \
      --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
      --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
      --audit-policy-file "$CLUSTER_DIR/audit-policy.yaml" --audit-log-path "$DIR/logs/cluster-audit.log" --audit-log-maxsize 100 \
      --audit-webhook-config-file "$CLUSTER_DIR/audit-webhook.kubeconfig" --audit-webhook-mode batch \
      --audit-webhook-batch-max-wait 1s --audit-webhook-initial-backoff 1s \
      --audit-webhook-truncate-enabled=true --audit-webhook-truncate-max-batch-size 15728640 \
      --audit-webhook-truncate-max-event-size 8388608 \
      --allow-privileged=true --v 1
    wait_for cluster-apiserver 120 cluster_kubectl get --raw /readyz
  fi

  if ! running cluster-controller-manager; then
    start_bg cluster-controller-manager "$(cluster_bin kube-controller-manager)" \
      --kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
      --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
      --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
      --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
      --cluster-signing-cert-file "$DIR/pki/ca.crt" --cluster-signing-key-file "$DIR/pki/ca.key" \
      --use-service-account-credentials --leader-elect=false --bind-address 127.0.0.1 --secure-port 10257 \
      --service-cluster-ip-range "$CLUSTER_SERVICE_CIDR" --v 1
  fi
  if ! running cluster-scheduler; then
    start_bg cluster-scheduler "$(cluster_bin kube-scheduler)" --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
      --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
      --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
      --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259 --v 1
  fi

  if ! running cluster-kubelet; then
    mkdir -p /var/lib/kubelet
    # Eviction and image GC thresholds are low: the testbed's disk is shared with the build, and an evicted
    # Palisade pod or a collected Palisade image (there is no registry to pull it back from) would fail the tier.
    cat > "$CLUSTER_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CLUSTER_CONTAINERD_SOCKET
address: $CLUSTER_NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
failSwapOn: false
podCIDR: $CLUSTER_POD_CIDR
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
    start_bg cluster-kubelet "$(cluster_bin kubelet)" --config "$CLUSTER_DIR/kubelet.yaml" \
      --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --hostname-override "$CLUSTER_NODE" --node-ip "$CLUSTER_NODE_IP" \
      --root-dir /var/lib/kubelet --v 1
  fi
  if ! running cluster-proxy; then
    cat > "$CLUSTER_DIR/proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $CLUSTER_POD_CIDR
hostnameOverride: $CLUSTER_NODE
bindAddress: $CLUSTER_NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
clientConnection: {kubeconfig: $CLUSTER_DIR/proxy.kubeconfig}
# The VM's conntrack table is not kube-proxy's to size.
conntrack: {maxPerCore: 0}
YAML
    start_bg cluster-proxy "$(cluster_bin kube-proxy)" --config "$CLUSTER_DIR/proxy.yaml" --v 1
  fi
}

cluster_kubectl() { "$(cluster_bin kubectl)" --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" "$@"; }

cluster_containerd_ready() {
  [ -S "$CLUSTER_CONTAINERD_SOCKET" ] || return 1
  local images; images=$(ctr --address "$CLUSTER_CONTAINERD_SOCKET" -n k8s.io images ls -q) || return 1
  if ! grep -qx "$TESTBOX_IMAGE" <<<"$images"; then
    python3 "$here/testbed.d/testbox-image.py" "$CLUSTER_DIR/testbox.tar" "$TESTBOX_IMAGE"
    ctr --address "$CLUSTER_CONTAINERD_SOCKET" -n k8s.io images import "$CLUSTER_DIR/testbox.tar" >/dev/null
  fi
}

# Ready when this kubelet and kube-proxy answer their health checks (a node object left in etcd by an earlier
# run says Ready before the new kubelet has said anything), the node is Ready and the `kubernetes` Service has
# its rules.
cluster_ready() {
  running cluster-kubelet && running cluster-proxy && running cluster-controller-manager && running cluster-scheduler \
    || return 1
  curl -fsS http://127.0.0.1:10248/healthz >/dev/null && curl -fsS http://127.0.0.1:10256/healthz >/dev/null || return 1
  [ "$(cluster_kubectl get node "$CLUSTER_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] \
    || return 1
  local rules; rules=$(iptables -t nat -S KUBE-SERVICES 2>/dev/null)
  [[ $rules == *"default/kubernetes:https"* ]]
}

cluster_down() {
  # Pods first, while the runtime that can stop them still runs; their network and mounts go with them.
  if running cluster-containerd; then
    "$CACHE/bin/crictl-$CRICTL_VERSION" --runtime-endpoint "unix://$CLUSTER_CONTAINERD_SOCKET" rmp -fa >/dev/null 2>&1 || true
  fi
  local process
  for process in cluster-proxy cluster-kubelet cluster-scheduler cluster-controller-manager cluster-apiserver cluster-etcd cluster-containerd; do
    stop_process "$process"
  done
  # containerd-shim processes outlive containerd (they are in no process group of ours).
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id [0-9a-f]* -address $CLUSTER_CONTAINERD_SOCKET" 2>/dev/null || true
  # kube-proxy's rules and the pods' bridge (a next `up` must not find a stale Service rule ready); the node
  # address stays on lo, where Kafka and OpenSearch listen too.
  [ -x "$(cluster_bin kube-proxy)" ] && "$(cluster_bin kube-proxy)" --cleanup >/dev/null 2>&1 || true
  ip link del cni0 2>/dev/null || true
  # The kubelet's volumes, and its root directory, which it bind-mounts onto itself (none left is no error).
  local mounts mount
  mounts=$(grep -o ' /var/lib/kubelet[^ ]*' /proc/mounts | sort -r || true)
  for mount in $mounts; do umount -l "$mount" 2>/dev/null || true; done
}
