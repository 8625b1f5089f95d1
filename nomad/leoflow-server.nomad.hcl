# leoflow-server on Nomad: the Falcon API + Airflow UI under gunicorn (task "server") and the gRPC
# endpoint agents dial (task "agentrpc", its own process: adr/0040), two services in Consul with
# health checks. Stateless: run as many as you like. The config file is rendered from Consul KV
# (leoflow/config/...) and Vault; a change re-renders it and sends SIGHUP (gunicorn reloads its
# workers gracefully; an invalid file is logged and the running config kept).
#
#   nomad job run -var image=ghcr.io/example/leoflow:0.1.0 nomad/leoflow-server.nomad.hcl

variable "image" {
  type        = string
  default     = "leoflow:latest"
  description = "the Leoflow container image"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "namespace" {
  type    = string
  default = "default"
}

job "leoflow-server" {
  type        = "service"
  datacenters = var.datacenters
  namespace   = var.namespace

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
    canary            = 1
  }

  group "server" {
    count = 2

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    network {
      port "http" {}
      # Static, so agents outside Nomad can dial leoflow-agentrpc.service.consul:8793.
      port "grpc" {
        static = 8793
      }
      port "grpc_metrics" {}
    }

    # Task logs the scheduler copied out of Nomad (and agents streamed) are read from here.
    volume "leoflow-data" {
      type      = "host"
      source    = "leoflow-data"
      read_only = false
    }

    service {
      name     = "leoflow-server"
      port     = "http"
      provider = "consul"
      tags     = ["http", "ui", "api"]

      check {
        name     = "ready"
        type     = "http"
        path     = "/health/ready"
        interval = "10s"
        timeout  = "3s"
      }

      check {
        name     = "live"
        type     = "http"
        path     = "/health/live"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    service {
      name     = "leoflow-agentrpc"
      port     = "grpc"
      provider = "consul"
      tags     = ["grpc"]
      task     = "agentrpc"

      check {
        name         = "grpc-health"
        type         = "grpc"
        grpc_use_tls = true
        interval     = "10s"
        timeout      = "3s"
      }
    }

    task "server" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "45s"

      config {
        image   = var.image
        command = "leoflow-server"
        args    = ["--config", "/local/leoflow.toml"]
        ports   = ["http"]
      }

      volume_mount {
        volume      = "leoflow-data"
        destination = "/var/lib/leoflow"
      }

      vault {
        role          = "leoflow-server"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      template {
        destination   = "local/leoflow.toml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        perms         = "0640"
        splay         = "5s"
        data          = <<EOH
# Rendered by Nomad from Consul KV (leoflow/config/...) and Vault. Do not edit in place.
home = {{ keyOrDefault "leoflow/config/home" "/var/lib/leoflow" | toJSON }}

[store]
backend = "consul"
consul_addr = {{ keyOrDefault "leoflow/config/store/consul_addr" "http://127.0.0.1:8500" | toJSON }}
consul_datacenter = {{ keyOrDefault "leoflow/config/store/consul_datacenter" "" | toJSON }}
prefix = {{ keyOrDefault "leoflow/config/store/prefix" "leoflow" | toJSON }}
{{ with secret "secret/data/leoflow/consul" }}{{ if .Data.data.token }}consul_token = {{ .Data.data.token | toJSON }}{{ end }}{{ end }}

[server]
bind = "0.0.0.0:{{ env "NOMAD_PORT_http" }}"
workers = {{ keyOrDefault "leoflow/config/server/workers" "4" }}
threads = {{ keyOrDefault "leoflow/config/server/threads" "4" }}
base_url = {{ keyOrDefault "leoflow/config/server/base_url" "" | toJSON }}
expose_config = {{ keyOrDefault "leoflow/config/server/expose_config" "false" }}
{{ with secret "secret/data/leoflow/server" }}{{ if .Data.data.webhook_secret }}webhook_secret = {{ .Data.data.webhook_secret | toJSON }}{{ end }}{{ end }}

[auth]
token_expiry_seconds = {{ keyOrDefault "leoflow/config/auth/token_expiry_seconds" "86400" }}
{{ with secret "secret/data/leoflow/server" }}{{ if .Data.data.jwt_secret }}jwt_secret = {{ .Data.data.jwt_secret | toJSON }}{{ end }}{{ end }}

[dags]
repo = {{ keyOrDefault "leoflow/config/dags/repo" "" | toJSON }}
ref = {{ keyOrDefault "leoflow/config/dags/ref" "HEAD" | toJSON }}
subdir = {{ keyOrDefault "leoflow/config/dags/subdir" "" | toJSON }}

[ui]
instance_name = {{ keyOrDefault "leoflow/config/ui/instance_name" "Leoflow" | toJSON }}

[vault]
issuer = {{ keyOrDefault "leoflow/config/vault/issuer" "" | toJSON }}
jwks_url = {{ keyOrDefault "leoflow/config/vault/jwks_url" "" | toJSON }}
audience = {{ keyOrDefault "leoflow/config/vault/audience" "leoflow-agents" | toJSON }}

[logging]
level = {{ keyOrDefault "leoflow/config/logging/level" "INFO" | toJSON }}
EOH
      }

      resources {
        cpu        = 500
        memory     = 512
        memory_max = 1024
      }
    }

    task "agentrpc" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image   = var.image
        command = "leoflow"
        args    = ["agentrpc", "--config", "/local/leoflow.toml"]
        ports   = ["grpc", "grpc_metrics"]
      }

      volume_mount {
        volume      = "leoflow-data"
        destination = "/var/lib/leoflow"
      }

      vault {
        role          = "leoflow-server"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      # A non-loopback gRPC bind requires TLS (agents send bearer tokens): a Vault PKI certificate.
      template {
        destination = "secrets/grpc.pem"
        change_mode = "restart"
        perms       = "0400"
        data        = <<EOH
{{ with secret "pki/issue/leoflow-server" "common_name=leoflow-agentrpc.service.consul" "ttl=72h" }}{{ .Data.certificate }}
{{ .Data.issuing_ca }}{{ end }}
EOH
      }

      template {
        destination = "secrets/grpc.key"
        change_mode = "restart"
        perms       = "0400"
        data        = <<EOH
{{ with secret "pki/issue/leoflow-server" "common_name=leoflow-agentrpc.service.consul" "ttl=72h" }}{{ .Data.private_key }}{{ end }}
EOH
      }

      template {
        destination   = "local/leoflow.toml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        perms         = "0640"
        data          = <<EOH
# Rendered by Nomad from Consul KV (leoflow/config/...) and Vault. Do not edit in place.
home = {{ keyOrDefault "leoflow/config/home" "/var/lib/leoflow" | toJSON }}

[store]
backend = "consul"
consul_addr = {{ keyOrDefault "leoflow/config/store/consul_addr" "http://127.0.0.1:8500" | toJSON }}
prefix = {{ keyOrDefault "leoflow/config/store/prefix" "leoflow" | toJSON }}
{{ with secret "secret/data/leoflow/consul" }}{{ if .Data.data.token }}consul_token = {{ .Data.data.token | toJSON }}{{ end }}{{ end }}

[server]
grpc_bind = "0.0.0.0:{{ env "NOMAD_PORT_grpc" }}"
grpc_metrics_bind = "0.0.0.0:{{ env "NOMAD_PORT_grpc_metrics" }}"
grpc_tls_cert_file = "/secrets/grpc.pem"
grpc_tls_key_file = "/secrets/grpc.key"
grpc_container_queues = {{ keyOrDefault "leoflow/config/server/grpc_container_queues" "" | toJSON }}

[vault]
issuer = {{ keyOrDefault "leoflow/config/vault/issuer" "" | toJSON }}
jwks_url = {{ keyOrDefault "leoflow/config/vault/jwks_url" "" | toJSON }}
audience = {{ keyOrDefault "leoflow/config/vault/audience" "leoflow-agents" | toJSON }}

[logging]
level = {{ keyOrDefault "leoflow/config/logging/level" "INFO" | toJSON }}
EOH
      }

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
