# Leoflow scheduler on Nomad: two instances, one leads (a Consul session lock), one stands by.
# The config file is rendered by Nomad's template block (consul-template) from Consul KV keys under
# leoflow/config/ and Vault secrets; a change re-renders it and sends SIGHUP (the scheduler reloads
# what it can and names the keys that need a restart). Tasks it starts are Nomad batch jobs of their
# own (executor = "nomad"), so this job only needs the Nomad API, Consul and the shared log volume.
#
#   nomad job run -var image=ghcr.io/example/leoflow:0.1.0 nomad/leoflow-scheduler.nomad.hcl

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

job "leoflow-scheduler" {
  type        = "service"
  datacenters = var.datacenters
  namespace   = var.namespace

  update {
    max_parallel      = 1
    health_check      = "task_states"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
    stagger           = "30s"
  }

  group "scheduler" {
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
      port "metrics" {}
    }

    # Task logs copied out of Nomad land here; leoflow-server reads the same volume.
    volume "leoflow-data" {
      type      = "host"
      source    = "leoflow-data"
      read_only = false
    }

    service {
      name     = "leoflow-scheduler"
      port     = "metrics"
      provider = "consul"
      tags     = ["metrics"]

      check {
        type     = "http"
        path     = "/metrics"
        interval = "15s"
        timeout  = "3s"
      }
    }

    task "scheduler" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image   = var.image
        command = "leoflow"
        args    = ["scheduler", "--config", "/local/leoflow.toml"]
        ports   = ["metrics"]
      }

      volume_mount {
        volume      = "leoflow-data"
        destination = "/var/lib/leoflow"
      }

      # Workload identity: Nomad exchanges the task's JWT for a Vault token (role leoflow-scheduler).
      vault {
        role        = "leoflow-scheduler"
        change_mode = "signal"
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
retention_days = {{ keyOrDefault "leoflow/config/store/retention_days" "30" }}
{{ with secret "secret/data/leoflow/consul" }}{{ if .Data.data.token }}consul_token = {{ .Data.data.token | toJSON }}{{ end }}{{ end }}

[scheduler]
executor = "nomad"
metrics_bind = "0.0.0.0:{{ env "NOMAD_PORT_metrics" }}"
leader_ttl = {{ keyOrDefault "leoflow/config/scheduler/leader_ttl" "15.0" }}
lock_delay = {{ keyOrDefault "leoflow/config/scheduler/lock_delay" "5.0" }}
parallelism = {{ keyOrDefault "leoflow/config/scheduler/parallelism" "32" }}
catchup_per_wakeup = {{ keyOrDefault "leoflow/config/scheduler/catchup_per_wakeup" "16" }}

[nomad]
addr = {{ keyOrDefault "leoflow/config/nomad/addr" "https://nomad.service.consul:4646" | toJSON }}
namespace = {{ keyOrDefault "leoflow/config/nomad/namespace" "leoflow" | toJSON }}
region = {{ keyOrDefault "leoflow/config/nomad/region" "" | toJSON }}
datacenters = {{ keyOrDefault "leoflow/config/nomad/datacenters" "dc1" | toJSON }}
node_pool = {{ keyOrDefault "leoflow/config/nomad/node_pool" "" | toJSON }}
node_class = {{ keyOrDefault "leoflow/config/nomad/node_class" "" | toJSON }}
meta = {{ keyOrDefault "leoflow/config/nomad/meta" "" | toJSON }}
placement_timeout = {{ keyOrDefault "leoflow/config/nomad/placement_timeout" "300.0" }}
vault_role = {{ keyOrDefault "leoflow/config/nomad/vault_role" "leoflow-task" | toJSON }}
ca_file = "/secrets/nomad-ca.pem"
{{ with secret "secret/data/leoflow/nomad" }}{{ if .Data.data.token }}token = {{ .Data.data.token | toJSON }}{{ end }}{{ end }}

[vault]
# The task's own Vault token (the vault block above keeps it fresh): the executor reads the secrets
# a task declares, to mask their values in the task's log.
addr = {{ env "VAULT_ADDR" | toJSON }}
token_file = "/secrets/vault_token"
kv_mount = {{ keyOrDefault "leoflow/config/vault/kv_mount" "secret" | toJSON }}
connections_path = {{ keyOrDefault "leoflow/config/vault/connections_path" "leoflow/connections" | toJSON }}
variables_path = {{ keyOrDefault "leoflow/config/vault/variables_path" "leoflow/variables" | toJSON }}

[logging]
level = {{ keyOrDefault "leoflow/config/logging/level" "INFO" | toJSON }}
EOH
      }

      # The Nomad CA, so the executor verifies the Nomad API's certificate (TLS verification is on).
      template {
        destination = "secrets/nomad-ca.pem"
        change_mode = "restart"
        data        = <<EOH
{{ with secret "secret/data/leoflow/nomad" }}{{ .Data.data.ca_pem }}{{ end }}
EOH
      }

      resources {
        cpu        = 500
        memory     = 512
        memory_max = 1024
      }
    }
  }
}
