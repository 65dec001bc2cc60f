//! The SETTINGS each peer sent, and which of them the other peer may be applying.
//!
//! A peer's SETTINGS bound what the *other* peer sends: the primary's SETTINGS_HEADER_TABLE_SIZE
//! bounds the client's HPACK encoder, its SETTINGS_MAX_FRAME_SIZE the client's frames. The
//! decoder sees both directions, but not when each peer processes what it receives. RFC 9113
//! section 6.5.3 gives the one certain point: the receiver acknowledges a SETTINGS frame once it
//! has applied it, and acknowledgements come in order. So for each peer we keep the values in
//! force as of the last acknowledgement the other peer sent, and the values of every SETTINGS
//! frame sent and not yet acknowledged. Until its acknowledgement, the receiver may be using
//! either the old values or the new ones, so a limit is judged against the largest of them
//! ([`SentSettings::max_header_table_size`], [`SentSettings::max_frame_size`]). That never rejects
//! what a peer may legitimately do, and once a lower value is acknowledged, it is enforced.
//!
//! The unacknowledged frames live in a fixed ring ([`MAX_PENDING`]), so this costs no heap.

use super::frame::{DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE};
use super::TunnelReason;

/// SETTINGS frames of one peer that may wait for their acknowledgement at once. Peers send one
/// or two; more than this ends in [`TunnelReason::TooManyPendingSettings`].
pub const MAX_PENDING: usize = 8;

/// The initial SETTINGS_HEADER_TABLE_SIZE (RFC 9113 section 6.5.2).
pub const DEFAULT_HEADER_TABLE_SIZE: u32 = 4096;

const HEADER_TABLE_SIZE: u16 = 0x1;
const ENABLE_PUSH: u16 = 0x2;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;

/// The values of one peer's settings that the decoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingsValues {
    pub header_table_size: u32,
    pub max_frame_size: u32,
}

impl Default for SettingsValues {
    fn default() -> Self {
        Self {
            header_table_size: DEFAULT_HEADER_TABLE_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

impl SettingsValues {
    /// Applies one 6-byte SETTINGS entry, checking the ranges RFC 9113 section 6.5.2 sets.
    /// Unknown identifiers are ignored, as the RFC requires.
    pub fn apply(&mut self, entry: &[u8]) -> Result<(), TunnelReason> {
        let [a, b, c, d, e, f] = *entry else {
            return Err(TunnelReason::InvalidFrameLength);
        };
        let id = u16::from_be_bytes([a, b]);
        let value = u32::from_be_bytes([c, d, e, f]);
        match id {
            HEADER_TABLE_SIZE => self.header_table_size = value,
            ENABLE_PUSH if value > 1 => return Err(TunnelReason::InvalidSetting),
            INITIAL_WINDOW_SIZE if value > 0x7fff_ffff => return Err(TunnelReason::InvalidSetting),
            MAX_FRAME_SIZE => {
                if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) {
                    return Err(TunnelReason::InvalidSetting);
                }
                self.max_frame_size = value;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The settings one peer sent: in force (acknowledged) and pending.
#[derive(Debug, Clone, Default)]
pub struct SentSettings {
    acknowledged: SettingsValues,
    /// Values after each unacknowledged frame, oldest first (`pending[..pending_len]`).
    pending: [SettingsValues; MAX_PENDING],
    pending_len: usize,
}

impl SentSettings {
    /// The values the newest SETTINGS frame leaves, the base for the next frame's entries.
    pub fn latest(&self) -> SettingsValues {
        match self.pending_len {
            0 => self.acknowledged,
            n => self.pending[n - 1],
        }
    }

    /// Records a complete SETTINGS frame (not an ACK) that leaves `values`.
    pub fn sent(&mut self, values: SettingsValues) -> Result<(), TunnelReason> {
        if self.pending_len == MAX_PENDING {
            return Err(TunnelReason::TooManyPendingSettings);
        }
        self.pending[self.pending_len] = values;
        self.pending_len += 1;
        Ok(())
    }

    /// The other peer acknowledged the oldest pending frame: its values are in force.
    pub fn acknowledged(&mut self) -> Result<(), TunnelReason> {
        if self.pending_len == 0 {
            return Err(TunnelReason::UnexpectedSettingsAck);
        }
        self.acknowledged = self.pending[0];
        self.pending.copy_within(1..self.pending_len, 0);
        self.pending_len -= 1;
        Ok(())
    }

    /// The largest dynamic table the other peer's HPACK encoder may be allowed right now.
    pub fn max_header_table_size(&self) -> u32 {
        self.candidates()
            .map(|v| v.header_table_size)
            .max()
            .unwrap_or(DEFAULT_HEADER_TABLE_SIZE)
    }

    /// The largest frame the other peer may be allowed to send right now.
    pub fn max_frame_size(&self) -> u32 {
        self.candidates()
            .map(|v| v.max_frame_size)
            .max()
            .unwrap_or(DEFAULT_MAX_FRAME_SIZE)
    }

    fn candidates(&self) -> impl Iterator<Item = &SettingsValues> {
        std::iter::once(&self.acknowledged).chain(&self.pending[..self.pending_len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u16, value: u32) -> [u8; 6] {
        let mut bytes = [0; 6];
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        bytes[2..].copy_from_slice(&value.to_be_bytes());
        bytes
    }

    fn values(header_table_size: u32) -> SettingsValues {
        SettingsValues {
            header_table_size,
            ..SettingsValues::default()
        }
    }

    #[test]
    fn lower_table_size_is_enforced_only_once_acknowledged() {
        let mut sent = SentSettings::default();
        assert_eq!(sent.max_header_table_size(), 4096);
        sent.sent(values(0)).expect("room");
        assert_eq!(
            sent.max_header_table_size(),
            4096,
            "the client may not have seen it"
        );
        sent.acknowledged().expect("pending");
        assert_eq!(sent.max_header_table_size(), 0);
    }

    #[test]
    fn higher_table_size_is_allowed_as_soon_as_sent() {
        let mut sent = SentSettings::default();
        sent.sent(values(65536)).expect("room");
        assert_eq!(sent.max_header_table_size(), 65536);
        sent.sent(values(100)).expect("room");
        assert_eq!(sent.max_header_table_size(), 65536);
        sent.acknowledged().expect("pending");
        assert_eq!(sent.max_header_table_size(), 65536);
        sent.acknowledged().expect("pending");
        assert_eq!(sent.max_header_table_size(), 100);
        assert_eq!(
            sent.acknowledged(),
            Err(TunnelReason::UnexpectedSettingsAck)
        );
    }

    #[test]
    fn pending_frames_are_bounded() {
        let mut sent = SentSettings::default();
        for _ in 0..MAX_PENDING {
            sent.sent(values(1)).expect("room");
        }
        assert_eq!(
            sent.sent(values(1)),
            Err(TunnelReason::TooManyPendingSettings)
        );
    }

    #[test]
    fn entries_are_range_checked_and_unknown_ones_ignored() {
        let mut v = SettingsValues::default();
        v.apply(&entry(1, 100)).expect("table size");
        v.apply(&entry(5, 1 << 20)).expect("frame size");
        v.apply(&entry(0x99, 7)).expect("unknown");
        v.apply(&entry(2, 1)).expect("push on");
        v.apply(&entry(4, 0x7fff_ffff)).expect("window");
        assert_eq!(v.header_table_size, 100);
        assert_eq!(v.max_frame_size, 1 << 20);
        for bad in [
            entry(2, 2),
            entry(4, 0x8000_0000),
            entry(5, 100),
            entry(5, 1 << 24),
        ] {
            assert_eq!(
                SettingsValues::default().apply(&bad),
                Err(TunnelReason::InvalidSetting)
            );
        }
    }
}
