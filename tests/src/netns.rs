//! A test network: hosts in Linux network namespaces made by the test itself, each with one veth
//! link (`eth0`, 10.77.0.x/24) into a bridge in a switch namespace of their own, so the real
//! binaries talk over a real (virtual) network and the test can break one host's link while every
//! socket stays open. Nothing touches the machine's own namespace; everything is deleted on drop.
//!
//! Faults, per host link:
//! - [`TestNet::partition`]: the host's port leaves the bridge. Both links stay up and every socket
//!   stays open; frames just go nowhere (a node that stops answering without closing anything).
//! - [`TestNet::degrade`]: random loss of the link's packets in both directions (nftables
//!   `numgen random`) and a rate limit with a bounded queue (`tc tbf`). `tc netem` is not used: the
//!   kernels these tests run on (Firecracker 6.x) ship without `sch_netem`, while `tbf` and
//!   nftables are there; tbf's queue gives the delay of a slow link rather than a fixed one.
//!
//! Needs root and iproute2 (`ip`, `tc`), and nftables (`nft`) for loss. Where they are missing
//! [`TestNet::new_or_skip`] says SKIPPED loudly; with `LASER_REQUIRE_FAULT_INJECTION=1` (CI) it
//! fails instead.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// One host of a [`TestNet`].
#[derive(Debug, Clone)]
pub struct NetHost {
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Its link's port on the switch's bridge.
    port: String,
}

/// Hosts on one virtual switch; see the module docs.
pub struct TestNet {
    switch: String,
    hosts: Vec<NetHost>,
}

const BRIDGE: &str = "br0";

/// Runs a setup command; the error names it and carries its stderr.
fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestNet {
    /// A switch and one host per name (10.77.0.1, .2, … in order). Namespace names carry the
    /// process id and a counter, so tests running side by side never share one.
    pub fn new(tag: &str, names: &[&str]) -> Result<Self, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "lsr{}-{}{}",
            std::process::id(),
            tag,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Self {
            switch: format!("{id}-sw"),
            hosts: Vec::new(),
        };
        sh(&["ip", "netns", "add", &net.switch])?;
        sh(&["ip", "-n", &net.switch, "link", "set", "lo", "up"])?;
        sh(&[
            "ip",
            "-n",
            &net.switch,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
        ])?;
        sh(&["ip", "-n", &net.switch, "link", "set", BRIDGE, "up"])?;
        for (i, name) in names.iter().enumerate() {
            let host = NetHost {
                name: name.to_string(),
                ns: format!("{id}-{i}"),
                ip: Ipv4Addr::new(10, 77, 0, i as u8 + 1),
                port: format!("p{i}"),
            };
            // Registered before it is made, so that drop deletes a half-made host too.
            net.hosts.push(host.clone());
            sh(&["ip", "netns", "add", &host.ns])?;
            sh(&["ip", "-n", &host.ns, "link", "set", "lo", "up"])?;
            sh(&[
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                &host.ns,
                "type",
                "veth",
                "peer",
                "name",
                &host.port,
                "netns",
                &net.switch,
            ])?;
            sh(&[
                "ip",
                "-n",
                &net.switch,
                "link",
                "set",
                &host.port,
                "master",
                BRIDGE,
                "up",
            ])?;
            let cidr = format!("{}/24", host.ip);
            sh(&["ip", "-n", &host.ns, "addr", "add", &cidr, "dev", "eth0"])?;
            sh(&["ip", "-n", &host.ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// [`TestNet::new`], or None after [`crate::skip_or_fail`] said why.
    pub fn new_or_skip(test: &str, tag: &str, names: &[&str]) -> Option<Self> {
        Self::new(tag, names)
            .map_err(|why| crate::skip_or_fail(test, &format!("no network namespaces ({why})")))
            .ok()
    }

    pub fn host(&self, name: &str) -> &NetHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the test network"))
    }

    /// `program` to run inside host `name`'s namespace (`ip netns exec` execs it, so the child's
    /// pid is the program's own).
    pub fn command(&self, name: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(name).ns])
            .arg(program);
        cmd
    }

    /// Cuts host `name` off: its port leaves the bridge; links and sockets stay up.
    pub fn partition(&self, name: &str) {
        let port = &self.host(name).port;
        sh(&["ip", "-n", &self.switch, "link", "set", port, "nomaster"]).expect("partition");
    }

    /// Undoes [`TestNet::partition`].
    pub fn heal(&self, name: &str) {
        let port = &self.host(name).port;
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "set",
            port,
            "master",
            BRIDGE,
        ])
        .expect("heal");
    }

    /// Makes host `name`'s link lossy and slow: `loss_percent` of its packets dropped at random
    /// each way, and at most `rate_kbit` each way through a queue of `queue_ms`.
    pub fn degrade(
        &self,
        name: &str,
        loss_percent: u32,
        rate_kbit: u32,
        queue_ms: u32,
    ) -> Result<(), String> {
        let host = self.host(name);
        let rule = format!(
            "table inet laser_fault {{ \
               chain input {{ type filter hook input priority 0; \
                 iifname \"eth0\" numgen random mod 100 < {loss_percent} drop; }}; \
               chain output {{ type filter hook output priority 0; \
                 oifname \"eth0\" numgen random mod 100 < {loss_percent} drop; }}; }}"
        );
        sh(&["ip", "netns", "exec", &host.ns, "nft", &rule])?;
        let rate = format!("{rate_kbit}kbit");
        let latency = format!("{queue_ms}ms");
        for (ns, dev) in [(&host.ns, "eth0"), (&self.switch, host.port.as_str())] {
            sh(&[
                "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate,
                "burst", "16kb", "latency", &latency,
            ])?;
        }
        Ok(())
    }

    /// Undoes [`TestNet::degrade`].
    pub fn restore(&self, name: &str) {
        let host = self.host(name);
        let _ = sh(&[
            "ip",
            "netns",
            "exec",
            &host.ns,
            "nft",
            "delete table inet laser_fault",
        ]);
        for (ns, dev) in [(&host.ns, "eth0"), (&self.switch, host.port.as_str())] {
            let _ = sh(&["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"]);
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends; processes still inside keep it alive until
        // they exit (the tests' `Proc`s kill theirs when dropped).
        for h in &self.hosts {
            let _ = sh(&["ip", "netns", "del", &h.ns]);
        }
        let _ = sh(&["ip", "netns", "del", &self.switch]);
    }
}
