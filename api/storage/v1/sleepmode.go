package v1

// Sleep mode annotations on a VirtualCluster (and, for the configuration
// ones, on a VirtualClusterTemplate, whose values apply to the clusters
// that use it unless a cluster sets its own). The names are the original
// product's.
const (
	// AnnotationSleepAfter: seconds of inactivity after which the cluster
	// sleeps.
	AnnotationSleepAfter = "sleepmode.loft.sh/sleep-after"
	// AnnotationDeleteAfter: seconds of inactivity after which the cluster
	// is deleted.
	AnnotationDeleteAfter = "sleepmode.loft.sh/delete-after"
	// AnnotationSleepSchedule: a cron schedule (5 fields) at whose times the
	// cluster goes to sleep.
	AnnotationSleepSchedule = "sleepmode.loft.sh/sleep-schedule"
	// AnnotationWakeupSchedule: a cron schedule at whose times a sleeping
	// cluster wakes.
	AnnotationWakeupSchedule = "sleepmode.loft.sh/wakeup-schedule"
	// AnnotationTimezone: the IANA time zone of both schedules (default UTC).
	AnnotationTimezone = "sleepmode.loft.sh/timezone"

	// AnnotationLastActivity: unix seconds of the last request through the
	// platform (written by the server, at most about once a minute).
	AnnotationLastActivity = "sleepmode.loft.sh/last-activity"
	// AnnotationSleepingSince: unix seconds since when the cluster sleeps
	// (written by the agent; absent while awake).
	AnnotationSleepingSince = "sleepmode.loft.sh/sleeping-since"
	// AnnotationForceSleep "true": sleep now (`sublet sleep vcluster`); the
	// next request or `sublet wakeup vcluster` removes it.
	AnnotationForceSleep = "sleepmode.loft.sh/force-sleep"
	// AnnotationPreventWakeup "true" with force-sleep: requests do not wake
	// the cluster, only `sublet wakeup vcluster` does.
	AnnotationPreventWakeup = "sleepmode.loft.sh/prevent-wakeup"
)

// ConditionSleeping: True while the cluster sleeps (its reason says why:
// Inactivity, SleepSchedule, ForceSleep), False while awake.
const ConditionSleeping = "Sleeping"

// ConditionSleepModeValid: the sleep mode annotations in force parsed; False
// names the annotation and what is wrong with it (the cluster stays awake).
const ConditionSleepModeValid = "SleepModeValid"

// HeaderSleepModeIgnore "true" on a request through the platform: the
// request neither counts as activity nor wakes a sleeping cluster.
const HeaderSleepModeIgnore = "X-Sleep-Mode-Ignore"
