"""The production host agent: agent protocol v2 for one Linux/KVM hypervisor, on libvirt.

``autorecovery agent --config /etc/autorecovery/agent.toml`` runs it (``pip install
'autorecovery[agent]'``). The protocol's state machine (fences, one init at a time, idempotent
retries, bounded results) is in ``hostagent.protocol`` and imports neither libvirt nor an HTTP
framework, so other agents (the fleet simulator) can reuse it.
"""
