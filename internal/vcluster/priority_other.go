//go:build !linux

package vcluster

const backgroundNice = 10

// setNice is a no-op where threads' priorities are not set this way.
func setNice(int) error { return nil }
