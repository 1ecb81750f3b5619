package vcluster

import (
	"context"
	"fmt"
	"net"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/clusterdns"
	"github.com/sublet-dev/sublet/internal/syncer"
)

// clusterDNS starts the cluster's DNS and its kube-dns Service, makes it
// the pods' nameserver unless one was given, and returns its address.
func (o *Options) clusterDNS(ctx context.Context, virtual kubernetes.Interface, pods *syncer.PodRuntime, log klog.Logger) (string, error) {
	dnsAddress, err := o.startDNS(ctx, virtual, log)
	if err != nil {
		return "", fmt.Errorf("cluster DNS: %w", err)
	}
	dnsIP, err := clusterdns.EnsureService(ctx, virtual, dnsAddress)
	if err != nil {
		return "", fmt.Errorf("cluster DNS service: %w", err)
	}
	if pods.DNSServer == "" {
		pods.DNSServer = dnsIP // ClusterFirst pods ask the cluster's DNS
	}
	return dnsAddress, nil
}

// startDNS serves the virtual cluster's DNS on o.DNSListen and returns the
// address it answers at.
func (o *Options) startDNS(ctx context.Context, virtual kubernetes.Interface, log klog.Logger) (string, error) {
	addr := o.DNSListen
	if addr == "" {
		bind := o.ControlPlane.BindAddress
		if bind == "" || net.ParseIP(bind).IsUnspecified() {
			bind = "127.0.0.1"
		}
		addr = net.JoinHostPort(bind, "0")
	}
	srv, informers, err := clusterdns.New(virtual, clusterdns.HostResolvers("/etc/resolv.conf"))
	if err != nil {
		return "", err
	}
	informers.Start(ctx.Done())
	listening, err := srv.Serve(ctx, addr)
	if err != nil {
		return "", fmt.Errorf("--dns-listen %s: %w", addr, err)
	}
	log.Info("cluster DNS serving", "address", listening)
	return listening, nil
}
