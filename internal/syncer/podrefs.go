package syncer

// ReasonHostReference is the event and condition reason of a pod the
// syncer keeps off the host because it names a host object or a piece of
// the host's infrastructure directly (pod.HostReferences).
const ReasonHostReference = "ForbiddenHostReference"
