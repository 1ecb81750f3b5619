// Package clusterdns answers a virtual cluster's DNS: its services and pods
// under cluster.local, from informers on the virtual API server, as a
// cluster's DNS add-on would; every other name goes to the host's resolver.
package clusterdns

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	// Domain is the cluster domain.
	Domain = "cluster.local."
	// ttl of the answers: short, so a change shows within seconds.
	ttl = 5
	// indexes of the informers.
	byClusterIP   = "clusterIP"
	byServiceName = "serviceName"
	byPodIP       = "podIP"
)

// Server answers DNS queries for one virtual cluster.
type Server struct {
	services, slices, pods cache.SharedIndexInformer
	upstream               []string // host resolvers, HOST:PORT
	client                 *dns.Client
}

// New prepares a server over the virtual cluster's objects; upstream are
// the resolvers for other names (HOST:PORT), usually the host's
// /etc/resolv.conf.
func New(virtual kubernetes.Interface, upstream []string) (*Server, informers.SharedInformerFactory, error) {
	f := informers.NewSharedInformerFactory(virtual, 0)
	s := &Server{
		services: f.Core().V1().Services().Informer(),
		slices:   f.Discovery().V1().EndpointSlices().Informer(),
		pods:     f.Core().V1().Pods().Informer(),
		upstream: upstream,
		client:   &dns.Client{Timeout: 5 * time.Second},
	}
	if err := s.services.AddIndexers(cache.Indexers{byClusterIP: func(obj interface{}) ([]string, error) {
		svc, _ := obj.(*corev1.Service)
		if svc == nil {
			return nil, nil
		}
		var ips []string
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != corev1.ClusterIPNone {
				ips = append(ips, ip)
			}
		}
		return ips, nil
	}}); err != nil {
		return nil, nil, err
	}
	if err := s.slices.AddIndexers(cache.Indexers{byServiceName: func(obj interface{}) ([]string, error) {
		es, _ := obj.(*discoveryv1.EndpointSlice)
		if es == nil || es.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
	}}); err != nil {
		return nil, nil, err
	}
	if err := s.pods.AddIndexers(cache.Indexers{byPodIP: func(obj interface{}) ([]string, error) {
		p, _ := obj.(*corev1.Pod)
		if p == nil {
			return nil, nil
		}
		var ips []string
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return ips, nil
	}}); err != nil {
		return nil, nil, err
	}
	return s, f, nil
}

// Serve answers on UDP and TCP at addr until ctx ends; it returns the
// address it listens on (addr's port 0 picks one) once listening.
func (s *Server) Serve(ctx context.Context, addr string) (string, error) {
	pc, l, err := listenUDPAndTCP(addr)
	if err != nil {
		return "", fmt.Errorf("dns listener: %w", err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: l, Handler: s}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	go func() {
		<-ctx.Done()
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	}()
	return pc.LocalAddr().String(), nil
}

// listenUDPAndTCP listens on addr over UDP and TCP on the same port. With
// port 0 the UDP port is picked first; when that port is taken for TCP, it
// tries again with another.
func listenUDPAndTCP(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			return nil, nil, err
		}
	}
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	var m *dns.Msg
	switch {
	case dns.IsSubDomain(Domain, name):
		m = s.cluster(req, q, name)
	case q.Qtype == dns.TypePTR && (dns.IsSubDomain("in-addr.arpa.", name) || dns.IsSubDomain("ip6.arpa.", name)):
		m = s.reverse(req, q, name)
	}
	if m == nil {
		m = s.forward(req)
	}
	_ = w.WriteMsg(m)
}

// answer builds a reply to req with rrs; no records and ok false is
// NXDOMAIN, no records and ok true is "no data".
func answer(req *dns.Msg, rrs []dns.RR, ok bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.Answer = rrs
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	if len(rrs) == 0 {
		m.Ns = []dns.RR{soa()}
	}
	return m
}

func soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns.dns." + Domain, Mbox: "hostmaster." + Domain, Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl}
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// addr makes an A or AAAA record for ip, if it is of the asked family.
func addr(name string, qtype uint16, ip string) dns.RR {
	parsed := net.ParseIP(ip)
	switch {
	case parsed == nil:
		return nil
	case parsed.To4() != nil && (qtype == dns.TypeA || qtype == dns.TypeANY):
		return &dns.A{Hdr: hdr(name, dns.TypeA), A: parsed.To4()}
	case parsed.To4() == nil && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: parsed}
	}
	return nil
}

// cluster answers a name under cluster.local: SVC.NS.svc, HOST.SVC.NS.svc,
// _PORT._PROTO.SVC.NS.svc and A-B-C-D.NS.pod.
func (s *Server) cluster(req *dns.Msg, q dns.Question, name string) *dns.Msg {
	labels := dns.SplitDomainName(strings.TrimSuffix(name, "."+Domain))
	n := len(labels)
	switch {
	case n >= 3 && labels[n-1] == "svc":
		ns, svcName := labels[n-2], labels[n-3]
		svc := s.service(ns, svcName)
		if svc == nil {
			return answer(req, nil, false)
		}
		switch rest := labels[:n-3]; {
		case len(rest) == 0:
			return answer(req, s.serviceRecords(svc, name, q.Qtype), true)
		case len(rest) == 1:
			rrs, ok := s.hostnameRecords(svc, rest[0], name, q.Qtype)
			return answer(req, rrs, ok)
		case len(rest) == 2 && strings.HasPrefix(rest[0], "_") && strings.HasPrefix(rest[1], "_"):
			rrs, ok := s.srvRecords(svc, strings.TrimPrefix(rest[0], "_"), strings.TrimPrefix(rest[1], "_"), name, q.Qtype)
			return answer(req, rrs, ok)
		}
		return answer(req, nil, false)
	case n == 3 && labels[n-1] == "pod":
		ip := strings.ReplaceAll(labels[0], "-", ".")
		if strings.Count(labels[0], "-") > 3 {
			ip = strings.ReplaceAll(labels[0], "-", ":") // an IPv6 address, dashed
		}
		if s.podWithIP(labels[1], ip) == nil {
			return answer(req, nil, false)
		}
		var rrs []dns.RR
		if rr := addr(name, q.Qtype, ip); rr != nil {
			rrs = append(rrs, rr)
		}
		return answer(req, rrs, true)
	}
	return answer(req, nil, false)
}

func (s *Server) service(ns, name string) *corev1.Service {
	obj, ok, _ := s.services.GetIndexer().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	svc, _ := obj.(*corev1.Service)
	return svc
}

func headless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// readyEndpoints are the ready endpoints of svc's slices.
func (s *Server) readyEndpoints(svc *corev1.Service) ([]discoveryv1.Endpoint, []discoveryv1.EndpointPort) {
	objs, _ := s.slices.GetIndexer().ByIndex(byServiceName, svc.Namespace+"/"+svc.Name)
	var eps []discoveryv1.Endpoint
	var ports []discoveryv1.EndpointPort
	for _, o := range objs {
		es := o.(*discoveryv1.EndpointSlice)
		ports = append(ports, es.Ports...)
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				eps = append(eps, ep)
			}
		}
	}
	return eps, ports
}

// serviceRecords: the ClusterIPs, or for a headless service the ready
// endpoints' addresses, or for an ExternalName service a CNAME.
func (s *Server) serviceRecords(svc *corev1.Service, name string, qtype uint16) []dns.RR {
	var rrs []dns.RR
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return []dns.RR{&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(svc.Spec.ExternalName)}}
	case headless(svc):
		eps, _ := s.readyEndpoints(svc)
		for _, ep := range eps {
			for _, ip := range ep.Addresses {
				if rr := addr(name, qtype, ip); rr != nil {
					rrs = append(rrs, rr)
				}
			}
		}
	default:
		for _, ip := range svc.Spec.ClusterIPs {
			if rr := addr(name, qtype, ip); rr != nil {
				rrs = append(rrs, rr)
			}
		}
	}
	return rrs
}

// hostnameRecords: HOSTNAME.SVC.NS.svc for a headless service's endpoint
// with that hostname (a pod with hostname and subdomain).
func (s *Server) hostnameRecords(svc *corev1.Service, hostname, name string, qtype uint16) ([]dns.RR, bool) {
	if !headless(svc) {
		return nil, false
	}
	eps, _ := s.readyEndpoints(svc)
	found := false
	var rrs []dns.RR
	for _, ep := range eps {
		if ep.Hostname == nil || *ep.Hostname != hostname {
			continue
		}
		found = true
		for _, ip := range ep.Addresses {
			if rr := addr(name, qtype, ip); rr != nil {
				rrs = append(rrs, rr)
			}
		}
	}
	return rrs, found
}

// srvRecords: _PORT._PROTO.SVC.NS.svc for a named port.
func (s *Server) srvRecords(svc *corev1.Service, port, proto, name string, qtype uint16) ([]dns.RR, bool) {
	var number int32
	for _, p := range svc.Spec.Ports {
		if strings.EqualFold(p.Name, port) && strings.EqualFold(string(p.Protocol), proto) {
			number = p.Port
		}
	}
	if number == 0 {
		return nil, false
	}
	if qtype != dns.TypeSRV && qtype != dns.TypeANY {
		return nil, true
	}
	target := svc.Name + "." + svc.Namespace + ".svc." + Domain
	if !headless(svc) {
		return []dns.RR{&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(number), Target: target}}, true
	}
	eps, ports := s.readyEndpoints(svc)
	for _, p := range ports {
		if p.Name != nil && strings.EqualFold(*p.Name, port) && p.Port != nil {
			number = *p.Port
		}
	}
	var rrs []dns.RR
	for _, ep := range eps {
		host := ""
		if ep.Hostname != nil {
			host = *ep.Hostname
		} else if len(ep.Addresses) > 0 {
			host = strings.NewReplacer(".", "-", ":", "-").Replace(ep.Addresses[0])
		}
		rrs = append(rrs, &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Weight: 100, Port: uint16(number), Target: host + "." + target})
	}
	return rrs, true
}

func (s *Server) podWithIP(ns, ip string) *corev1.Pod {
	objs, _ := s.pods.GetIndexer().ByIndex(byPodIP, ip)
	for _, o := range objs {
		if p := o.(*corev1.Pod); p.Namespace == ns {
			return p
		}
	}
	return nil
}

// reverse answers PTR for a service's ClusterIP or a pod's IP; nil for
// other addresses (the host's resolver knows them).
func (s *Server) reverse(req *dns.Msg, q dns.Question, name string) *dns.Msg {
	ip := reverseIP(name)
	if ip == "" {
		return nil
	}
	if objs, _ := s.services.GetIndexer().ByIndex(byClusterIP, ip); len(objs) > 0 {
		svc := objs[0].(*corev1.Service)
		return answer(req, []dns.RR{&dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: svc.Name + "." + svc.Namespace + ".svc." + Domain}}, true)
	}
	if objs, _ := s.pods.GetIndexer().ByIndex(byPodIP, ip); len(objs) > 0 {
		p := objs[0].(*corev1.Pod)
		target := strings.NewReplacer(".", "-", ":", "-").Replace(ip) + "." + p.Namespace + ".pod." + Domain
		if p.Spec.Hostname != "" && p.Spec.Subdomain != "" {
			target = p.Spec.Hostname + "." + p.Spec.Subdomain + "." + p.Namespace + ".svc." + Domain
		}
		return answer(req, []dns.RR{&dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: target}}, true)
	}
	return nil
}

// reverseIP reads the address of an in-addr.arpa or ip6.arpa name.
func reverseIP(name string) string {
	labels := dns.SplitDomainName(name)
	n := len(labels)
	switch {
	case n == 6 && labels[4] == "in-addr":
		return fmt.Sprintf("%s.%s.%s.%s", labels[3], labels[2], labels[1], labels[0])
	case n == 34 && labels[32] == "ip6":
		var b strings.Builder
		for i := 31; i >= 0; i-- {
			b.WriteString(labels[i])
			if i%4 == 0 && i > 0 {
				b.WriteString(":")
			}
		}
		if ip := net.ParseIP(b.String()); ip != nil {
			return ip.String()
		}
	}
	return ""
}

// forward asks the host's resolvers.
func (s *Server) forward(req *dns.Msg) *dns.Msg {
	for _, up := range s.upstream {
		if resp, _, err := s.client.Exchange(req, up); err == nil {
			return resp
		}
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	return m
}

// HostResolvers reads the nameservers of a resolv.conf file (HOST:53).
func HostResolvers(path string) []string {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, "53"))
	}
	return out
}
