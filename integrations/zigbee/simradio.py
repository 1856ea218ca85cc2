"""A simulated Zigbee network: a zigpy radio and nodes that answer ZDO and ZCL, in process.

The simulated radio is a zigpy ``ControllerApplication`` like the real radio libraries: zigpy encodes every
request to bytes and hands it to ``send_packet``; the radio puts it "on the air" as an ``AirFrame`` (a small
frame with an FCS, not 802.15.4) and the addressed node decodes the ZDO or ZCL payload with zigpy's types,
answers with bytes of its own, and the radio turns those back into a ``ZigbeePacket`` for zigpy's
``packet_received``. Nothing skips the encoding: what the gateway reads is what a node serialized.

A ``SimNetwork`` is found by name (``device = "sim://<name>"``), so the gateway and its simulated devices
meet in process: ``SimNetwork("dev")`` registers it, ``close()`` removes it. It plays the part of the radio
stick's memory too (the formed network survives a new ControllerApplication) and of the air (nodes join when
joining is permitted, leave, power off and stop answering).

Nodes are ``SimNode``s made of ``SimEndpoint``s of ``SimCluster``s: a cluster holds attribute values, answers
Read/Write Attributes and Configure Reporting, reports bound attributes by their reporting configuration and
dispatches cluster commands to ``handle_<command name>`` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import zigpy.application
import zigpy.config as zconf
import zigpy.device
import zigpy.endpoint
import zigpy.exceptions
import zigpy.profiles.zha
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import Cluster, foundation

from .radio import SmartEnergyMixin

log = logging.getLogger(__name__)

COORDINATOR_IEEE = "4e:45:4d:53:00:00:00:01"
SIM_PREFIX = "sim://"
MAC_NO_ACK = 0xE9

_NETWORKS: dict[str, SimNetwork] = {}


def get_network(name: str) -> SimNetwork:
    try:
        return _NETWORKS[name]
    except KeyError:
        raise KeyError(
            f"no simulated Zigbee network {name!r}; running: {', '.join(sorted(_NETWORKS)) or 'none'}"
        ) from None


# -- the air -----------------------------------------------------------------------------------------------

AIR_MAGIC = 0x5A


class AirFrame(t.Struct):
    """One frame on the simulated air (APS-level addressing and the ZDO/ZCL payload)."""

    magic: t.uint8_t
    src: t.NWK
    dst_mode: t.AddrMode
    dst: t.uint16_t
    src_ep: t.uint8_t
    dst_ep: t.uint8_t
    profile: t.uint16_t
    cluster: t.uint16_t
    lqi: t.uint8_t
    payload: t.LongOctetString


def fcs16(data: bytes) -> int:
    """CRC-16/KERMIT, the 802.15.4 frame check sequence."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def encode_air(frame: AirFrame) -> bytes:
    body = frame.serialize()
    return body + fcs16(body).to_bytes(2, "little")


def decode_air(raw: bytes) -> AirFrame:
    """Decode a frame off the air; ValueError says what is wrong with it."""
    if len(raw) < 3:
        raise ValueError(f"{len(raw)} bytes is too short for a frame")
    body, fcs = raw[:-2], int.from_bytes(raw[-2:], "little")
    if fcs16(body) != fcs:
        raise ValueError("frame check sequence does not match")
    frame, rest = AirFrame.deserialize(body)
    if rest:
        raise ValueError(f"{len(rest)} bytes after the frame")
    if frame.magic != AIR_MAGIC:
        raise ValueError(f"not a frame (0x{frame.magic:02X})")
    if frame.dst_mode not in (t.AddrMode.NWK, t.AddrMode.Group, t.AddrMode.Broadcast):
        raise ValueError(f"invalid destination address mode {int(frame.dst_mode)}")
    return frame


class SimNetwork:
    """The air, the radio stick's memory and the nodes of one simulated network."""

    def __init__(
        self,
        name: str,
        *,
        coordinator_ieee: str = COORDINATOR_IEEE,
        tick_s: float = 0.1,
        latency_s: float = 0.0,
        no_ack_delay_s: float = 0.05,
    ) -> None:
        if name in _NETWORKS:
            raise ValueError(f"a simulated Zigbee network named {name!r} already runs")
        self.name = name
        self.coordinator_ieee = t.EUI64.convert(coordinator_ieee)
        self.tick_s = tick_s
        self.latency_s = latency_s
        self.no_ack_delay_s = no_ack_delay_s
        self.nodes: dict[t.EUI64, SimNode] = {}
        self.radio: SimulatedControllerApplication | None = None
        self.nvram: tuple[zigpy.state.NetworkInfo, zigpy.state.NodeInfo] | None = None
        self.permit_until = 0.0
        self.permits = 0  # how many times the network was opened for joining
        self.taps: list[Callable[[str, AirFrame], None]] = []  # ("up"|"down", frame) for sniffers
        self._ticker: asyncio.Task | None = None
        _NETWORKS[name] = self

    @property
    def device_path(self) -> str:
        return SIM_PREFIX + self.name

    def add(self, *nodes: SimNode) -> None:
        for node in nodes:
            if node.ieee in self.nodes:
                raise ValueError(f"node {node.ieee} is already on network {self.name!r}")
            node.network = self
            self.nodes[node.ieee] = node

    def node(self, ieee: str | t.EUI64) -> SimNode:
        return self.nodes[t.EUI64.convert(ieee) if isinstance(ieee, str) else ieee]

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.radio = None
        if _NETWORKS.get(self.name) is self:
            del _NETWORKS[self.name]

    # -- the radio's side --------------------------------------------------------------------------------
    def attach(self, radio: SimulatedControllerApplication) -> None:
        if self.radio is not None and self.radio is not radio:
            raise ConnectionRefusedError(f"simulated Zigbee network {self.name!r} already has a radio")
        self.radio = radio
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_forever(), name=f"zigbee-sim-{self.name}"
            )

    def detach(self, radio: SimulatedControllerApplication) -> None:
        if self.radio is radio:
            self.radio = None
            self.permit_until = 0.0
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None

    @property
    def permitting(self) -> bool:
        return self.radio is not None and _now() < self.permit_until

    def permit(self, seconds: float) -> None:
        self.permit_until = _now() + seconds if seconds > 0 else 0.0
        if seconds <= 0:
            return
        self.permits += 1
        loop = asyncio.get_running_loop()
        for i, node in enumerate(self.nodes.values()):
            if (
                node.join_on_permit
                and not node.joined
                and node.online
                and self.permits >= node.joins_from_permit
            ):
                loop.call_later(0.005 * (i + 1), node.join)

    async def transmit(self, raw: bytes) -> None:
        """A frame from the radio: deliver it, or raise DeliveryError when no node acknowledges it."""
        frame = decode_air(raw)
        for tap in self.taps:
            tap("down", frame)
        loop = asyncio.get_running_loop()
        if frame.dst_mode != t.AddrMode.NWK:
            for node in list(self.nodes.values()):
                if node.joined and node.online:
                    self._later(loop, node.receive, frame)
            return
        if frame.dst == 0x0000:
            return  # to the coordinator itself: the stick answers nothing the simulation needs
        node = next((n for n in self.nodes.values() if n.nwk == frame.dst and n.joined), None)
        if node is None or not node.online:
            await asyncio.sleep(self.no_ack_delay_s)
            raise zigpy.exceptions.DeliveryError(f"no MAC acknowledgement from 0x{frame.dst:04X}", MAC_NO_ACK)
        self._later(loop, node.receive, frame)

    # -- the nodes' side ---------------------------------------------------------------------------------
    def send_up(self, node: SimNode, frame: AirFrame) -> None:
        if self.radio is None or not node.online:
            return
        for tap in self.taps:
            tap("up", frame)
        self._later(asyncio.get_running_loop(), self._deliver, encode_air(frame))

    def inject(self, raw: bytes) -> None:
        """Put raw bytes on the air towards the radio (garbage, for tests)."""
        self._later(asyncio.get_running_loop(), self._deliver, bytes(raw))

    def _deliver(self, raw: bytes) -> None:
        if self.radio is not None:
            self.radio.receive_air_frame(raw)

    def node_left(self, node: SimNode) -> None:
        if self.radio is not None:
            self.radio.handle_leave(node.nwk, node.ieee)

    def coordinator_endpoint(self, profile: int) -> int:
        return self.radio.endpoint_for_profile(profile) if self.radio is not None else 1

    def tick(self) -> None:
        now = _now()
        for node in list(self.nodes.values()):
            try:
                node.tick(now)
            except Exception:
                log.exception("simulated node %s failed to report", node.ieee)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    def _later(self, loop: asyncio.AbstractEventLoop, fn: Callable, *args: Any) -> None:
        if self.latency_s > 0:
            loop.call_later(self.latency_s, fn, *args)
        else:
            loop.call_soon(fn, *args)


def _now() -> float:
    return asyncio.get_running_loop().time()


# -- nodes ---------------------------------------------------------------------------------------------------


@dataclass
class _Reporting:
    min_s: int
    max_s: int
    change: Any
    last_value: Any = None
    last_sent: float = -math.inf
    discrete: bool = False
    dirty: bool = False  # a discrete value changed since the last report (each change is reported)


class SimCluster:
    """One cluster of a simulated node: attribute values and command handlers.

    Subclasses set ``cluster`` (the zigpy cluster class that defines attributes and command schemas) and
    define ``handle_<command name>(args, hdr)`` methods that return ``None`` (success), a ``foundation.Status``,
    or ``(command name, fields)`` to answer with that command.
    """

    cluster: ClassVar[type[Cluster]]

    def __init__(
        self, attributes: dict[str, Any] | None = None, *, cluster: type[Cluster] | None = None
    ) -> None:
        if cluster is not None:
            self.cluster = cluster
        self.cluster_id = self.cluster.cluster_id
        self.values: dict[int, Any] = {}
        self.endpoint: SimEndpoint | None = None
        self.is_server = True
        for name, value in (attributes or {}).items():
            self.set(name, value)

    @property
    def node(self) -> SimNode:
        assert self.endpoint is not None and self.endpoint.node is not None
        return self.endpoint.node

    def attr(self, name_or_id: str | int) -> foundation.ZCLAttributeDef:
        return self.cluster.find_attribute(name_or_id)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(self.attr(name).id, default)

    def set(self, name: str, value: Any) -> None:
        attr = self.attr(name)
        value = attr.type(value)
        old = self.values.get(attr.id)
        self.values[attr.id] = value
        if old != value and self.endpoint is not None and self.endpoint.node is not None:
            self.endpoint.node.attribute_changed(self, attr.id)

    # -- what a peer asks ----------------------------------------------------------------------------
    def read(self, attrid: int) -> foundation.ReadAttributeRecord:
        if attrid not in self.values:
            return foundation.ReadAttributeRecord(attrid, foundation.Status.UNSUPPORTED_ATTRIBUTE)
        attr = self.attr(attrid)
        value = foundation.TypeValue(type=attr.zcl_type, value=attr.type(self.values[attrid]))
        return foundation.ReadAttributeRecord(attrid, foundation.Status.SUCCESS, value)

    def write(self, attrid: int, value: Any, pending: dict[int, Any]) -> foundation.Status:
        """Check one attribute of a Write Attributes; ``pending`` holds the earlier ones of the same frame."""
        if attrid not in self.values:
            return foundation.Status.UNSUPPORTED_ATTRIBUTE
        attr = self.attr(attrid)
        if not attr.access & (
            foundation.ZCLAttributeAccess.Write | foundation.ZCLAttributeAccess.Write_Optional
        ):
            return foundation.Status.READ_ONLY
        try:
            value = attr.type(value)
        except (TypeError, ValueError):
            return foundation.Status.INVALID_DATA_TYPE
        return self.check_write(attr.name, value, pending)

    def check_write(self, name: str, value: Any, pending: dict[int, Any]) -> foundation.Status:
        return foundation.Status.SUCCESS

    def written(self, changes: dict[str, Any]) -> None:
        """Attributes a peer wrote (already stored)."""

    def command(self, name: str, args: Any, hdr: foundation.ZCLHeader) -> Any:
        handler = getattr(self, f"handle_{name}", None)
        if handler is None:
            return foundation.Status.UNSUP_CLUSTER_COMMAND
        return handler(args, hdr)

    # -- what this cluster says on its own -----------------------------------------------------------------
    def send(self, name: str, *, ddr: bool = True, tsn: int | None = None, **fields: Any) -> int:
        """Send one of this cluster's commands to the coordinator; returns the TSN."""
        return self.node.send_command(self, name, ddr=ddr, tsn=tsn, **fields)


class SimEndpoint:
    def __init__(
        self,
        endpoint_id: int,
        *,
        profile: int = zigpy.profiles.zha.PROFILE_ID,
        device_type: int,
        servers: Iterable[SimCluster] = (),
        clients: Iterable[SimCluster] = (),
    ) -> None:
        self.endpoint_id = endpoint_id
        self.profile = profile
        self.device_type = device_type
        self.node: SimNode | None = None
        self.in_clusters: dict[int, SimCluster] = {}
        self.out_clusters: dict[int, SimCluster] = {}
        for cluster in servers:
            cluster.endpoint, cluster.is_server = self, True
            self.in_clusters[cluster.cluster_id] = cluster
        for cluster in clients:
            cluster.endpoint, cluster.is_server = self, False
            self.out_clusters[cluster.cluster_id] = cluster

    def descriptor(self) -> zdo_t.SizePrefixedSimpleDescriptor:
        return zdo_t.SizePrefixedSimpleDescriptor(
            endpoint=self.endpoint_id,
            profile=self.profile,
            device_type=self.device_type,
            device_version=0,
            input_clusters=list(self.in_clusters),
            output_clusters=list(self.out_clusters),
        )


_MAC_FLAGS = zdo_t.NodeDescriptor.MACCapabilityFlags
ROUTER_CAPABILITY = (
    _MAC_FLAGS.FullFunctionDevice
    | _MAC_FLAGS.MainsPowered
    | _MAC_FLAGS.RxOnWhenIdle
    | _MAC_FLAGS.AllocateAddress
)


class SimNode:
    """A mains-powered Zigbee router with endpoints, bindings and reporting."""

    def __init__(
        self,
        ieee: str,
        nwk: int,
        endpoints: Iterable[SimEndpoint],
        *,
        manufacturer_code: int = 0x1234,
        join_on_permit: bool = True,
        joins_from_permit: int = 1,
    ) -> None:
        self.ieee = t.EUI64.convert(ieee)
        self.nwk = t.NWK(nwk)
        self.endpoints = {ep.endpoint_id: ep for ep in endpoints}
        for ep in self.endpoints.values():
            ep.node = self
        self.manufacturer_code = manufacturer_code
        self.join_on_permit = join_on_permit
        # put in pairing mode only from the network's Nth opening (dev mode: a device the installer pairs)
        self.joins_from_permit = joins_from_permit
        self.network: SimNetwork | None = None
        self.joined = False
        self.online = True
        self.bindings: set[tuple[int, int, t.EUI64, int]] = set()  # (src ep, cluster, dst ieee, dst ep)
        self.reporting: dict[tuple[int, int, int], _Reporting] = {}  # (ep, cluster, attr id)
        self.commands_received: list[tuple[int, str, Any]] = []  # (cluster id, command, fields)
        self._tsn = 0

    def __repr__(self) -> str:
        return f"<SimNode {self.ieee} nwk=0x{self.nwk:04X} joined={self.joined} online={self.online}>"

    def cluster(self, cluster_id: int, *, server: bool = True) -> SimCluster:
        for ep in self.endpoints.values():
            clusters = ep.in_clusters if server else ep.out_clusters
            if cluster_id in clusters:
                return clusters[cluster_id]
        raise KeyError(f"{self!r} has no {'server' if server else 'client'} cluster 0x{cluster_id:04X}")

    def attribute_changed(self, cluster: SimCluster, attrid: int) -> None:
        assert cluster.endpoint is not None
        cfg = self.reporting.get((cluster.endpoint.endpoint_id, cluster.cluster_id, attrid))
        if cfg is not None and cfg.discrete:
            cfg.dirty = True

    def next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) % 256
        return self._tsn

    def node_descriptor(self) -> zdo_t.NodeDescriptor:
        return zdo_t.NodeDescriptor(
            logical_type=zdo_t.LogicalType.Router,
            complex_descriptor_available=0,
            user_descriptor_available=0,
            reserved=0,
            aps_flags=0,
            frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
            mac_capability_flags=ROUTER_CAPABILITY,
            manufacturer_code=self.manufacturer_code,
            maximum_buffer_size=82,
            maximum_incoming_transfer_size=82,
            server_mask=0,
            maximum_outgoing_transfer_size=82,
            descriptor_capability_field=zdo_t.NodeDescriptor.DescriptorCapability.NONE,
        )

    # -- membership and power ---------------------------------------------------------------------------
    def join(self) -> None:
        """Join if the network permits it, and announce."""
        if self.network is None or self.joined or not self.online or not self.network.permitting:
            return
        self.joined = True
        log.debug("simulated node %s joined as 0x%04X", self.ieee, self.nwk)
        self.announce()

    def announce(self) -> None:
        self._send_zdo(
            zdo_t.ZDOCmd.Device_annce,
            self.next_tsn(),
            [self.nwk, self.ieee, t.uint8_t(int(ROUTER_CAPABILITY))],
            dst_mode=t.AddrMode.Broadcast,
            dst=t.BroadcastAddress.RX_ON_WHEN_IDLE,
        )

    def leave(self, *, notify: bool = True) -> None:
        """Leave the network, forgetting bindings and reporting (as a reset device does)."""
        if not self.joined:
            return
        self.joined = False
        self.bindings.clear()
        self.reporting.clear()
        if notify and self.network is not None:
            self.network.node_left(self)

    def power_off(self) -> None:
        self.online = False

    def power_on(self, *, announce: bool = True) -> None:
        self.online = True
        if self.joined and announce:
            self.announce()

    # -- receiving ------------------------------------------------------------------------------------------
    def receive(self, frame: AirFrame) -> None:
        if not (self.joined and self.online):
            return
        unicast = frame.dst_mode == t.AddrMode.NWK
        try:
            if frame.dst_ep == 0 and frame.profile == 0:
                self._receive_zdo(frame, unicast)
            else:
                self._receive_zcl(frame, unicast)
        except Exception:
            log.exception("simulated node %s failed on a frame", self.ieee)

    def _receive_zdo(self, frame: AirFrame, unicast: bool) -> None:
        cmd = zdo_t.ZDOCmd(frame.cluster)
        if cmd not in zdo_t.CLUSTERS or frame.cluster & 0x8000:
            return
        _, types = zdo_t.CLUSTERS[cmd]
        data = bytes(frame.payload)
        try:
            hdr, rest = zdo_t.ZDOHeader.deserialize(frame.cluster, data)
            args, _ = t.deserialize(rest, types)
        except ValueError:
            return
        tsn = hdr.tsn
        ok = zdo_t.Status.SUCCESS
        match cmd:
            case zdo_t.ZDOCmd.Node_Desc_req:
                self._reply_zdo(cmd, tsn, [ok, self.nwk, self.node_descriptor()])
            case zdo_t.ZDOCmd.Active_EP_req:
                self._reply_zdo(cmd, tsn, [ok, self.nwk, list(self.endpoints)])
            case zdo_t.ZDOCmd.Simple_Desc_req:
                ep = self.endpoints.get(args[1])
                if ep is None:
                    self._reply_zdo(cmd, tsn, [zdo_t.Status.NOT_ACTIVE, self.nwk, None])
                else:
                    self._reply_zdo(cmd, tsn, [ok, self.nwk, ep.descriptor()])
            case zdo_t.ZDOCmd.Bind_req | zdo_t.ZDOCmd.Unbind_req:
                src_ieee, src_ep, cluster_id, dst = args
                if src_ieee != self.ieee or src_ep not in self.endpoints:
                    self._reply_zdo(cmd, tsn, [zdo_t.Status.INVALID_EP])
                    return
                entry = (int(src_ep), int(cluster_id), dst.ieee, int(dst.endpoint))
                if cmd == zdo_t.ZDOCmd.Bind_req:
                    self.bindings.add(entry)
                else:
                    self.bindings.discard(entry)
                self._reply_zdo(cmd, tsn, [ok])
            case zdo_t.ZDOCmd.Mgmt_Leave_req:
                self._reply_zdo(cmd, tsn, [ok])
                asyncio.get_running_loop().call_soon(self.leave)
            case zdo_t.ZDOCmd.IEEE_addr_req:
                if args[0] == self.nwk:
                    self._reply_zdo(cmd, tsn, [ok, self.ieee, self.nwk])
            case zdo_t.ZDOCmd.NWK_addr_req:
                if args[0] == self.ieee:
                    self._reply_zdo(cmd, tsn, [ok, self.ieee, self.nwk])
            case zdo_t.ZDOCmd.Mgmt_Permit_Joining_req | zdo_t.ZDOCmd.Device_annce:
                if unicast and cmd == zdo_t.ZDOCmd.Mgmt_Permit_Joining_req:
                    self._reply_zdo(cmd, tsn, [ok])
            case _:
                if unicast:
                    self._reply_zdo(cmd, tsn, [zdo_t.Status.NOT_SUPPORTED])

    def _reply_zdo(self, request: zdo_t.ZDOCmd, tsn: int, args: list) -> None:
        self._send_zdo(zdo_t.ZDOCmd(request | 0x8000), tsn, args)

    def _send_zdo(
        self, cmd: zdo_t.ZDOCmd, tsn: int, args: list, *, dst_mode=t.AddrMode.NWK, dst: int = 0x0000
    ) -> None:
        _, types = zdo_t.CLUSTERS[cmd]
        payload = t.uint8_t(tsn).serialize() + t.serialize(args, types[: len(args)])
        self._send_up(0, 0, 0x0000, cmd, payload, dst_mode=dst_mode, dst=dst)

    def _receive_zcl(self, frame: AirFrame, unicast: bool) -> None:
        if frame.dst_ep == 0xFF:  # the broadcast endpoint: every endpoint with the cluster takes it
            for ep_id in sorted(self.endpoints):
                self._receive_zcl(frame.replace(dst_ep=ep_id), unicast=False)
            return
        ep = self.endpoints.get(frame.dst_ep)
        if ep is None:
            return
        data = bytes(frame.payload)
        try:
            hdr, rest = foundation.ZCLHeader.deserialize(data)
        except ValueError:
            return  # a device drops what it cannot parse
        to_server = hdr.direction == foundation.Direction.Client_to_Server
        cluster = (ep.in_clusters if to_server else ep.out_clusters).get(frame.cluster)
        reply = _Reply(self, ep, frame, hdr)
        if cluster is None:
            if unicast:
                reply.default(foundation.Status.UNSUPPORTED_CLUSTER)
            return
        if hdr.frame_control.is_cluster:
            self._cluster_command(cluster, hdr, rest, reply)
        else:
            self._general_command(cluster, hdr, rest, reply)

    def _cluster_command(
        self, cluster: SimCluster, hdr: foundation.ZCLHeader, rest: bytes, reply: _Reply
    ) -> None:
        commands = cluster.cluster.server_commands if cluster.is_server else cluster.cluster.client_commands
        definition = commands.get(hdr.command_id)
        if definition is None:
            reply.default(foundation.Status.UNSUP_CLUSTER_COMMAND)
            return
        try:
            args, _ = definition.schema.deserialize(rest)
        except (ValueError, KeyError):
            reply.default(foundation.Status.MALFORMED_COMMAND)
            return
        self.commands_received.append((cluster.cluster_id, definition.name, args))
        result = cluster.command(definition.name, args, hdr)
        if isinstance(result, tuple):
            name, fields = result
            self.send_command(cluster, name, tsn=hdr.tsn, ddr=True, **fields)
        elif result is None or result == foundation.Status.SUCCESS:
            if not hdr.frame_control.disable_default_response:
                reply.default(foundation.Status.SUCCESS)
        else:
            reply.default(foundation.Status(result))

    def _general_command(
        self, cluster: SimCluster, hdr: foundation.ZCLHeader, rest: bytes, reply: _Reply
    ) -> None:
        G = foundation.GeneralCommand
        try:
            command_id = G(hdr.command_id)
            args, _ = foundation.GENERAL_COMMANDS[command_id].schema.deserialize(rest)
        except (ValueError, KeyError):
            reply.default(foundation.Status.MALFORMED_COMMAND)
            return
        if command_id == G.Read_Attributes:
            records = [cluster.read(attrid) for attrid in args.attribute_ids]
            reply.general(G.Read_Attributes_rsp, status_records=records)
        elif command_id in (G.Write_Attributes, G.Write_Attributes_No_Response):
            failures, pending = [], {}
            for attribute in args.attributes:
                status = cluster.write(attribute.attrid, attribute.value.value, pending)
                if status == foundation.Status.SUCCESS:
                    pending[attribute.attrid] = cluster.attr(attribute.attrid).type(attribute.value.value)
                else:
                    failures.append(
                        foundation.WriteAttributesStatusRecord(status=status, attrid=attribute.attrid)
                    )
            for attrid, value in pending.items():
                cluster.set(cluster.attr(attrid).name, value)
            if pending:
                cluster.written({cluster.attr(a).name: v for a, v in pending.items()})
            if command_id == G.Write_Attributes:
                records = failures or [
                    foundation.WriteAttributesStatusRecord(status=foundation.Status.SUCCESS)
                ]
                reply.general(
                    G.Write_Attributes_rsp, status_records=foundation.WriteAttributesResponse(records)
                )
        elif command_id == G.Configure_Reporting:
            failures = []
            for config in args.config_records:
                if config.attrid not in cluster.values:
                    failures.append(
                        foundation.ConfigureReportingResponseRecord(
                            status=foundation.Status.UNSUPPORTED_ATTRIBUTE,
                            direction=config.direction,
                            attrid=config.attrid,
                        )
                    )
                    continue
                key = (cluster.endpoint.endpoint_id, cluster.cluster_id, int(config.attrid))
                data_type = foundation.DataType.from_type_id(cluster.attr(config.attrid).zcl_type)
                self.reporting[key] = _Reporting(
                    int(config.min_interval),
                    int(config.max_interval),
                    getattr(config, "reportable_change", None),
                    discrete=data_type.type_class is not foundation.Analog,
                )
            records = failures or [
                foundation.ConfigureReportingResponseRecord(status=foundation.Status.SUCCESS)
            ]
            reply.general(
                G.Configure_Reporting_rsp, status_records=foundation.ConfigureReportingResponse(records)
            )
        elif command_id in (G.Default_Response, G.Report_Attributes) or command_id.name.endswith("_rsp"):
            return  # responses and reports from the coordinator need no answer
        else:
            reply.default(foundation.Status.UNSUP_GENERAL_COMMAND)

    # -- sending ----------------------------------------------------------------------------------------------
    def send_command(
        self, cluster: SimCluster, name: str, *, ddr: bool = True, tsn: int | None = None, **fields
    ) -> int:
        """Send a cluster command: server clusters send client commands and the other way round."""
        defs = cluster.cluster.ClientCommandDefs if cluster.is_server else cluster.cluster.ServerCommandDefs
        definition = getattr(defs, name)
        payload = definition.schema(**fields).serialize()
        direction = (
            foundation.Direction.Server_to_Client
            if cluster.is_server
            else foundation.Direction.Client_to_Server
        )
        tsn = self.next_tsn() if tsn is None else tsn
        self.send_zcl(
            cluster,
            general=False,
            command_id=definition.id,
            direction=direction,
            tsn=tsn,
            ddr=ddr,
            payload=payload,
        )
        return tsn

    def send_zcl(
        self,
        cluster: SimCluster,
        *,
        general: bool,
        command_id: int,
        direction: foundation.Direction,
        tsn: int,
        ddr: bool,
        payload: bytes,
        dst_ep: int | None = None,
    ) -> None:
        ep = cluster.endpoint
        assert ep is not None and self.network is not None
        hdr = foundation.ZCLHeader(
            frame_control=foundation.FrameControl(
                frame_type=foundation.FrameType.GLOBAL_COMMAND
                if general
                else foundation.FrameType.CLUSTER_COMMAND,
                is_manufacturer_specific=False,
                direction=direction,
                disable_default_response=ddr,
                reserved=0,
            ),
            manufacturer=None,
            tsn=tsn,
            command_id=command_id,
        )
        if dst_ep is None:
            dst_ep = self.network.coordinator_endpoint(ep.profile)
        self._send_up(ep.endpoint_id, dst_ep, ep.profile, cluster.cluster_id, hdr.serialize() + payload)

    def _send_up(
        self,
        src_ep: int,
        dst_ep: int,
        profile: int,
        cluster_id: int,
        payload: bytes,
        *,
        dst_mode=t.AddrMode.NWK,
        dst: int = 0,
    ) -> None:
        if self.network is None:
            return
        frame = AirFrame(
            magic=AIR_MAGIC,
            src=self.nwk,
            dst_mode=dst_mode,
            dst=dst,
            src_ep=src_ep,
            dst_ep=dst_ep,
            profile=profile,
            cluster=cluster_id,
            lqi=200,
            payload=t.LongOctetString(payload),
        )
        self.network.send_up(self, frame)

    # -- reporting ------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Send the attribute reports that are due by their reporting configuration and bindings."""
        if not (self.joined and self.online and self.reporting):
            return
        due: dict[tuple[int, int], list[foundation.Attribute]] = {}
        for (ep_id, cluster_id, attrid), cfg in self.reporting.items():
            ep = self.endpoints[ep_id]
            cluster = ep.in_clusters.get(cluster_id)
            if cluster is None or attrid not in cluster.values or cfg.max_s == 0xFFFF:
                continue
            if not any(b[0] == ep_id and b[1] == cluster_id for b in self.bindings):
                continue
            value = cluster.values[attrid]
            elapsed = now - cfg.last_sent
            periodic = 0 < cfg.max_s and elapsed >= cfg.max_s
            if cfg.discrete:
                changed = cfg.dirty or cfg.last_value is None
            else:
                changed = _changed(value, cfg.last_value, cfg.change)
            if not (periodic or (elapsed >= cfg.min_s and changed)):
                continue
            attr = cluster.attr(attrid)
            due.setdefault((ep_id, cluster_id), []).append(
                foundation.Attribute(
                    attrid=attrid, value=foundation.TypeValue(type=attr.zcl_type, value=attr.type(value))
                )
            )
            cfg.last_value, cfg.last_sent, cfg.dirty = value, now, False
        for (ep_id, cluster_id), reports in due.items():
            cluster = self.endpoints[ep_id].in_clusters[cluster_id]
            dst_ep = next(b[3] for b in sorted(self.bindings) if b[0] == ep_id and b[1] == cluster_id)
            payload = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Report_Attributes].schema(
                attribute_reports=reports
            )
            self.send_zcl(
                cluster,
                general=True,
                command_id=foundation.GeneralCommand.Report_Attributes,
                direction=foundation.Direction.Server_to_Client,
                tsn=self.next_tsn(),
                ddr=True,
                payload=payload.serialize(),
                dst_ep=dst_ep,
            )


def _changed(value: Any, last: Any, change: Any) -> bool:
    if last is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float) or change is None:
        return value != last
    return abs(value - last) >= max(1, change)


class _Reply:
    """Answers one received ZCL frame from the cluster it addressed."""

    def __init__(self, node: SimNode, ep: SimEndpoint, frame: AirFrame, hdr: foundation.ZCLHeader) -> None:
        self.node, self.ep, self.frame, self.hdr = node, ep, frame, hdr

    def _send(self, command_id: int, payload: bytes) -> None:
        direction = self.hdr.direction.flip()
        self.node._send_up(
            self.ep.endpoint_id,
            self.frame.src_ep,
            self.frame.profile,
            self.frame.cluster,
            foundation.ZCLHeader(
                frame_control=foundation.FrameControl(
                    frame_type=foundation.FrameType.GLOBAL_COMMAND,
                    is_manufacturer_specific=False,
                    direction=direction,
                    disable_default_response=True,
                    reserved=0,
                ),
                manufacturer=None,
                tsn=self.hdr.tsn,
                command_id=command_id,
            ).serialize()
            + payload,
        )

    def general(self, general_id: foundation.GeneralCommand, /, **fields: Any) -> None:
        self._send(general_id, foundation.GENERAL_COMMANDS[general_id].schema(**fields).serialize())

    def default(self, status: foundation.Status) -> None:
        self.general(
            foundation.GeneralCommand.Default_Response, command_id=self.hdr.command_id, status=status
        )


# -- the radio -----------------------------------------------------------------------------------------------


class SimulatedControllerApplication(SmartEnergyMixin, zigpy.application.ControllerApplication):
    """A zigpy radio whose stick and air are a ``SimNetwork`` (``device: {path: "sim://<name>"}``)."""

    DISPLAY_NAME = "Simulated radio"
    DESCRIPTION = "In-process simulated Zigbee network for dev mode and tests"

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        self._network: SimNetwork | None = None
        self._endpoints: dict[int, zdo_t.SimpleDescriptor] = {}
        self.garbage_frames = 0

    @property
    def network(self) -> SimNetwork:
        if self._network is None:
            raise zigpy.exceptions.ControllerException("the simulated radio is not connected")
        return self._network

    async def connect(self) -> None:
        path = self.config[zconf.CONF_DEVICE][zconf.CONF_DEVICE_PATH]
        try:
            network = get_network(path.removeprefix(SIM_PREFIX))
        except KeyError as exc:
            raise ConnectionRefusedError(str(exc.args[0])) from None
        network.attach(self)
        self._network = network

    async def disconnect(self) -> None:
        if self._network is not None:
            self._network.detach(self)
            self._network = None

    async def start_network(self) -> None:
        await self.load_network_info(load_devices=False)
        await self.register_endpoints()
        node_info = self.state.node_info
        coordinator = self.add_device(ieee=node_info.ieee, nwk=node_info.nwk)
        coordinator.node_desc = zdo_t.NodeDescriptor(
            logical_type=zdo_t.LogicalType.Coordinator,
            complex_descriptor_available=0,
            user_descriptor_available=0,
            reserved=0,
            aps_flags=0,
            frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
            mac_capability_flags=ROUTER_CAPABILITY | _MAC_FLAGS.AlternatePanCoordinator,
            manufacturer_code=0x1234,
            maximum_buffer_size=82,
            maximum_incoming_transfer_size=255,
            server_mask=0,
            maximum_outgoing_transfer_size=255,
            descriptor_capability_field=zdo_t.NodeDescriptor.DescriptorCapability.NONE,
        )
        for ep_id, sd in self._endpoints.items():
            ep = coordinator.add_endpoint(ep_id)
            ep.status = zigpy.endpoint.Status.ZDO_INIT
            ep.profile_id = sd.profile
            ep.device_type = sd.device_type
            for cluster_id in sd.input_clusters:
                ep.add_input_cluster(cluster_id)
            for cluster_id in sd.output_clusters:
                ep.add_output_cluster(cluster_id)
        coordinator.manufacturer = "HEMS"
        coordinator.model = "Simulated coordinator"

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        network = self.network
        if network.nvram is None:
            raise zigpy.exceptions.NetworkNotFormed("the simulated radio has no network stored")
        network_info, node_info = network.nvram
        if load_devices:
            joined = [n for n in network.nodes.values() if n.joined]
            network_info = network_info.replace(
                children=[n.ieee for n in joined], nwk_addresses={n.ieee: n.nwk for n in joined}
            )
        self.state.network_info = network_info
        self.state.node_info = node_info

    async def write_network_info(
        self, *, network_info: zigpy.state.NetworkInfo, node_info: zigpy.state.NodeInfo
    ) -> None:
        network = self.network
        node_info = node_info.replace(
            ieee=network.coordinator_ieee if node_info.ieee == t.EUI64.UNKNOWN else node_info.ieee,
            nwk=t.NWK(0x0000),
            logical_type=zdo_t.LogicalType.Coordinator,
            manufacturer="HEMS",
            model="Simulated coordinator",
        )
        network.nvram = (network_info.replace(source="hems-simulated-radio"), node_info)

    async def reset_network_info(self) -> None:
        self.network.nvram = None

    async def force_remove(self, dev: zigpy.device.ZigbeeDevice) -> None:
        node = self.network.nodes.get(dev.ieee)
        if node is not None:
            node.leave(notify=False)

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        self._endpoints[descriptor.endpoint] = descriptor

    def endpoint_for_profile(self, profile: int) -> int:
        for ep_id, sd in sorted(self._endpoints.items()):
            if sd.profile == profile:
                return ep_id
        return 1

    async def permit_ncp(self, time_s: int = 60) -> None:
        self.network.permit(time_s)

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60) -> None:
        self.network.permit(time_s)

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        network = self._network
        if network is None:
            raise zigpy.exceptions.DeliveryError("the simulated radio is not connected")
        dst = packet.dst
        assert dst is not None
        if dst.addr_mode == t.AddrMode.IEEE:
            try:
                address = int(self.get_device(ieee=dst.address).nwk)
            except KeyError:
                raise zigpy.exceptions.DeliveryError(f"no address for {dst.address}") from None
            mode = t.AddrMode.NWK
        else:
            mode, address = dst.addr_mode, int(dst.address)
        frame = AirFrame(
            magic=AIR_MAGIC,
            src=self.state.node_info.nwk,
            dst_mode=mode,
            dst=address,
            src_ep=packet.src_ep or 0,
            dst_ep=packet.dst_ep or 0,
            profile=packet.profile_id,
            cluster=packet.cluster_id,
            lqi=255,
            payload=t.LongOctetString(packet.data.serialize()),
        )
        async with self._limit_concurrency(priority=packet.priority):
            await network.transmit(encode_air(frame))

    def receive_air_frame(self, raw: bytes) -> None:
        """A frame heard on the air: decode it and hand it to zigpy, or log and drop it."""
        try:
            frame = decode_air(raw)
        except ValueError as exc:
            self.garbage_frames += 1
            self._drop(None, None, f"garbage on the air ({len(raw)} bytes): {exc}")
            return
        if frame.dst_mode == t.AddrMode.NWK:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=frame.dst)
        elif frame.dst_mode == t.AddrMode.Group:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.Group, address=frame.dst)
        else:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast, address=frame.dst)
        packet = t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=frame.src),
            src_ep=frame.src_ep,
            dst=dst,
            dst_ep=frame.dst_ep,
            profile_id=frame.profile,
            cluster_id=frame.cluster,
            data=t.SerializableBytes(bytes(frame.payload)),
            lqi=frame.lqi,
            rssi=-40,
        )
        with contextlib.suppress(Exception):
            self.packet_received(packet)
