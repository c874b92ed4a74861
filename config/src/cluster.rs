//! The validated `[cluster]`: this box as one node of an HA pair (checked by
//! `validate_cluster`).

/// `[cluster]`: this box as one node of a pair. keepalived (VRRP over the `link` NIC)
/// decides which node holds the resources; each resource personality's volumes live on a
/// DRBD device replicated over the same link, and its own address floats with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This box's name among [`Cluster::nodes`].
    pub node: String,
    /// The `[[nic]]` tag of the cluster link (VRRP and DRBD run over it).
    pub link: String,
    /// Shared by the two nodes: VRRP's password (its first 8 bytes, all VRRP carries) and
    /// DRBD's peer authentication.
    pub secret: String,
    /// The personalities that fail over, in file order.
    pub resources: Vec<String>,
    /// The size of each resource's replicated disk, in bytes.
    pub size: u64,
    /// Whether the higher-priority node takes the resources back when it returns (else the
    /// resources stay where they are until `ramkeyctl cluster failover`).
    pub failback: bool,
    /// VRRP's virtual router id (1-255), the same on both nodes.
    pub router_id: u8,
    /// The two nodes.
    pub nodes: Vec<ClusterNode>,
}

impl Cluster {
    /// The default size of each resource's replicated disk.
    pub const DEFAULT_SIZE: u64 = 256 << 20;

    /// This box's entry.
    #[must_use]
    pub fn me(&self) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|n| n.name == self.node)
            .unwrap_or(&self.nodes[0])
    }

    /// The other node's entry.
    #[must_use]
    pub fn peer(&self) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|n| n.name != self.node)
            .unwrap_or(&self.nodes[0])
    }

    /// Whether `personality` is a cluster resource.
    #[must_use]
    pub fn is_resource(&self, personality: &str) -> bool {
        self.resources.iter().any(|r| r == personality)
    }
}

/// One node of `[cluster]`: `[[cluster.nodes]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its name (`[cluster] node` names this box's).
    pub name: String,
    /// Its address on the cluster link.
    pub address: std::net::Ipv4Addr,
    /// Its VRRP priority (1-254): the higher one takes the resources when both start.
    pub priority: u8,
}
