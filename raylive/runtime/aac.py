"""AAC AudioSpecificConfig (ISO 14496-3 1.6.2.1) and RFC 6381 codec strings."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
SAMPLES_PER_FRAME = 1024


class AacError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AacInfo:
    object_type: int
    sample_rate: int
    channels: int

    @property
    def codec_string(self) -> str:
        return f"mp4a.40.{self.object_type}"


def parse_audio_specific_config(asc: bytes) -> AacInfo:
    if len(asc) < 2:
        raise AacError("AudioSpecificConfig too short")
    bits = int.from_bytes(asc[:5].ljust(5, b"\x00"), "big")  # 40 bits is enough for the header
    pos = 40

    def take(n: int) -> int:
        nonlocal pos
        pos -= n
        if pos < 0:
            raise AacError("AudioSpecificConfig truncated")
        return (bits >> pos) & ((1 << n) - 1)

    object_type = take(5)
    if object_type == 31:
        object_type = 32 + take(6)
    freq_index = take(4)
    if freq_index == 15:
        sample_rate = take(24)
    elif freq_index < len(SAMPLE_RATES):
        sample_rate = SAMPLE_RATES[freq_index]
    else:
        raise AacError(f"reserved sampling frequency index {freq_index}")
    channels = take(4)
    if sample_rate <= 0:
        raise AacError("AudioSpecificConfig has no sample rate")
    return AacInfo(object_type, sample_rate, channels or 2)
